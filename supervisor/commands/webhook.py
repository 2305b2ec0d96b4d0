"""`webhook`: its options; the server is supervisor/admission/webhook.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from supervisor.commands.inject import defaults_from, inject_defaults
from supervisor.commands.options import (
    env,
    option,
    run_async,
)
from supervisor.core import settings as settings_mod
from supervisor.core.logs import LEVELS, configure

if TYPE_CHECKING:
    from supervisor.core.signals import Signals


WEBHOOK_HELP = """Mutating admission webhook: POST /mutate (AdmissionReview v1) injects what `inject` does.

Pods opt in with the label litestream-supervisor.io/inject: "true"; the minimum is that label
plus the annotation litestream-supervisor.io/db. Only CREATE is mutated; a pod that opted in
but cannot be injected safely is refused with a message saying what to change.
"""


@click.command(help=WEBHOOK_HELP)
@option("--addr", envvar=env("ADDR"), default="0.0.0.0:8443", show_default=True, help="HTTPS listen address.")
@option("--tls-cert-file", envvar=env("TLS_CERT_FILE"), required=True, type=click.Path(dir_okay=False),
         help="Serving certificate (PEM); re-read when it changes.")
@option("--tls-key-file", envvar=env("TLS_KEY_FILE"), required=True, type=click.Path(dir_okay=False),
         help="Its private key (PEM); re-read when it changes.")
@option("--namespace", envvar=[env("NAMESPACE"), "POD_NAMESPACE"],
         help="The webhook's own namespace: never injected.")
@option("--log-level", envvar=env("LOG_LEVEL"), type=click.Choice(LEVELS), default="info", show_default=True)
@option("--log-format", envvar=env("LOG_FORMAT"), type=click.Choice(["auto", "json", "console"]), default="auto")
@option("--drain-seconds", envvar=env("DRAIN_SECONDS"), type=click.FloatRange(min=0), default=10, show_default=True,
         help="After SIGTERM: seconds /readyz fails while requests are still served (endpoints drop the pod), "
         "then exit. Keep the pod's grace period above it.")
@inject_defaults
def webhook(**options: Any) -> int:
    from pathlib import Path

    from supervisor.admission import webhook as command

    configure(options["log_level"], options["log_format"])
    host, port = settings_mod.parse_addr(options["addr"], "--addr")
    defaults = defaults_from(options)
    from dataclasses import replace

    defaults = replace(defaults, own_namespace=options.get("namespace"))

    async def main(_settings: Any, signals: Signals) -> int:
        return await command.main(defaults, host, port, Path(options["tls_cert_file"]),
                                  Path(options["tls_key_file"]), signals, options["drain_seconds"])

    return run_async(main, None, handles_signals=True)  # type: ignore[arg-type]
