"""`health`: a running sidecar's readiness, asked from inside its container."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from supervisor.commands.options import (
    env,
    exit_codes_epilog,
    option,
)
from supervisor.core import settings as settings_mod
from supervisor.core.errors import ExitCode, SupervisorError

if TYPE_CHECKING:
    pass


HEALTH_HELP = """Print a running sidecar's /readyz?verbose (or PATH): each check, and why one fails.

\b
From inside its container (the image has no wget or curl):
kubectl -n NAMESPACE exec POD -c litestream -- litestream-supervisor health
"""


@click.command(help=HEALTH_HELP, epilog=exit_codes_epilog([ExitCode.OK, ExitCode.USAGE, ExitCode.CHECK_FAILED]))
@option("--health-addr", envvar=env("HEALTH_ADDR"), default=settings_mod.DEFAULT_HEALTH_ADDR, show_default=True,
         help="The sidecar's --health-addr (0.0.0.0 is asked on 127.0.0.1).")
@click.argument("path", default="/readyz?verbose")
def health(health_addr: str, path: str) -> int:
    import urllib.error
    import urllib.request

    host, port = settings_mod.parse_addr(health_addr, "--health-addr")
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/{path.lstrip('/')}"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    except OSError as e:
        raise SupervisorError(f"--health-addr {health_addr}: cannot reach {url}: {e}",
                              exit_code=ExitCode.CHECK_FAILED) from None
    click.echo(body.decode(errors="replace").rstrip("\n"))
    return 0 if status == 200 else int(ExitCode.CHECK_FAILED)
