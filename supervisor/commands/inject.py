"""`inject`: its options, and the injection defaults the webhook shares."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from supervisor.commands.options import (
    env,
    option,
)
from supervisor.core.errors import ExitCode, SupervisorError

if TYPE_CHECKING:
    pass


INJECT_DEFAULTS = [
    option("--image", envvar=env("IMAGE"), default="litestream-supervisor:0.1.0", show_default=True,
            help="Image of the injected containers."),
    option("--bucket", envvar=env("BUCKET"), help="Default bucket (annotation litestream-supervisor.io/bucket)."),
    option("--endpoint", envvar=env("ENDPOINT"), help="Default S3 and STS endpoint URL (annotation .../endpoint)."),
    option("--role-arn", envvar=env("ROLE_ARN"), help="Default role ARN (annotation .../role-arn)."),
    option("--region", envvar=env("REGION"), default="us-east-1", show_default=True),
    option("--audience", envvar=env("AUDIENCE"), default="sts.amazonaws.com", show_default=True,
            help="Audience of the projected token (the STS client id)."),
    option("--token-expiration", envvar=env("TOKEN_EXPIRATION"), type=click.IntRange(min=600), default=3600,
            show_default=True, help="expirationSeconds of the projected token."),
    option("--sidecar", envvar=env("SIDECAR"), type=click.Choice(["native", "legacy"]), default="native",
            show_default=True, help="native: an init container with restartPolicy Always (K8s >= 1.29)."),
    option("--cpu-limit", envvar=env("CPU_LIMIT"),
            help="CPU limit of the injected containers (e.g. 500m), for namespaces whose ResourceQuota demands "
            "one (annotation .../cpu-limit). [default: none]"),
]


def inject_defaults(f: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(INJECT_DEFAULTS):
        f = decorator(f)
    return f


def defaults_from(options: dict[str, Any]) -> Any:
    from supervisor.admission.inject import CPU_QUANTITY, Defaults

    if options.get("cpu_limit") and not CPU_QUANTITY.fullmatch(options["cpu_limit"]):
        raise click.BadParameter(f"expected a CPU quantity such as 500m or 1, got {options['cpu_limit']!r}",
                                 param_hint="'--cpu-limit'")

    return Defaults(image=options["image"], bucket=options.get("bucket"), endpoint=options.get("endpoint"),
                    role_arn=options.get("role_arn"), region=options["region"], audience=options["audience"],
                    token_expiration_seconds=options["token_expiration"], sidecar=options["sidecar"],
                    cpu_limit=options.get("cpu_limit"))


INJECT_HELP = """Print the YAML with the injection applied to pods and pod templates that opted in.

Opt in with the pod label litestream-supervisor.io/inject: "true" and the annotation
litestream-supervisor.io/db: /data/app.db; other annotations litestream-supervisor.io/<name>
override the defaults below. Everything else is printed unchanged. What was added goes to
standard error, one line per workload.
"""


@click.command(help=INJECT_HELP)
@option("-f", "--filename", "filename", envvar=env("FILENAME"), required=True,
         help="YAML file (one or more documents), or - for standard input.")
@inject_defaults
def inject(**options: Any) -> int:
    import yaml

    from supervisor.admission.documents import inject_documents
    from supervisor.admission.inject import Refused

    source = options["filename"]
    try:
        text = sys.stdin.read() if source == "-" else open(source).read()  # noqa: SIM115
        docs = list(yaml.safe_load_all(text))
    except OSError as e:
        raise SupervisorError(f"-f: cannot read {source}: {e.strerror}", exit_code=ExitCode.USAGE) from None
    except yaml.YAMLError as e:
        raise SupervisorError(f"-f {source}: not valid YAML: {e}".splitlines()[0], exit_code=ExitCode.USAGE) from None
    try:
        out, notes = inject_documents(docs, defaults_from(options))
    except Refused as e:
        raise SupervisorError(f"-f {source}: {e}", exit_code=ExitCode.USAGE) from None
    for note in notes:
        click.echo(note, err=True)
    click.echo(yaml.safe_dump_all(out, sort_keys=False), nl=False)
    return 0
