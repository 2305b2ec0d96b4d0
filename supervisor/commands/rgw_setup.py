"""`rgw-setup`: its options; the calls are supervisor/identity/rgw.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from supervisor.commands.options import (
    env,
    exit_codes_epilog,
    option,
)
from supervisor.core import settings as settings_mod
from supervisor.core.errors import ExitCode, SupervisorError
from supervisor.core.logs import configure

if TYPE_CHECKING:
    pass


RGW_SETUP_HELP = """Create or update, idempotently, RGW's side for one app: OIDC provider, role, trust and policy.

Uses admin credentials from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: in a
Job, from a Secret). Prints the role ARN to use as AWS_ROLE_ARN; a second run changes nothing.
"""


@click.command(name="rgw-setup", help=RGW_SETUP_HELP,
             epilog=exit_codes_epilog([ExitCode.OK, ExitCode.USAGE, ExitCode.UNREACHABLE, ExitCode.ACCESS_DENIED]))
@option("--endpoint", envvar=env("ENDPOINT"), required=True, help="RGW's S3/IAM endpoint URL.")
@option("--issuer", envvar=env("ISSUER"), required=True,
         help="The cluster's service-account issuer URL (`kubectl get --raw /.well-known/openid-configuration`).")
@option("--issuer-ca", envvar=env("ISSUER_CA"), type=click.Path(dir_okay=False),
         help="CA that signed the issuer's TLS certificate (in a pod: the service account's ca.crt).")
@option("--namespace", "namespace", envvar=env("SA_NAMESPACE"), required=True,
         help="Namespace of the app's service account.")
@option("--service-account", envvar=env("SERVICE_ACCOUNT"), required=True, help="The app's service account.")
@option("--bucket", envvar=env("BUCKET"), required=True, help="The replica bucket.")
@option("--role-name", envvar=env("ROLE_NAME"), help="[default: litestream-<namespace>-<service account>]")
@option("--audience", envvar=env("AUDIENCE"), default="sts.amazonaws.com", show_default=True,
         help="The projected token's audience (the provider's client id).")
@option("--region", envvar=env("REGION"), default="us-east-1", show_default=True)
def rgw_setup(**options: Any) -> int:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from supervisor.identity import rgw

    configure("info", "auto")
    plan = rgw.Plan(issuer=options["issuer"].rstrip("/"), audience=options["audience"], bucket=options["bucket"],
                    namespace=options["namespace"], service_account=options["service_account"],
                    role_name=options.get("role_name")
                    or f"litestream-{options['namespace']}-{options['service_account']}")
    endpoint = settings_mod._endpoint(options["endpoint"], "--endpoint")
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=options["region"],
                       config=Config(retries={"max_attempts": 3}, connect_timeout=10, read_timeout=30))
    try:
        thumbprints = rgw.issuer_thumbprints(plan.issuer, options.get("issuer_ca"))
        arn, changes = rgw.apply(iam, plan, thumbprints)
    except ClientError as e:
        code = (e.response.get("Error") or {}).get("Code") or e.response["ResponseMetadata"]["HTTPStatusCode"]
        raise SupervisorError(f"--endpoint {endpoint}: RGW's IAM API refused ({code}); the admin credentials "
                              "need the roles and oidc-provider caps", exit_code=ExitCode.ACCESS_DENIED) from None
    except BotoCoreError as e:
        raise SupervisorError(f"--endpoint {endpoint}: {e}", exit_code=ExitCode.UNREACHABLE) from None
    for change in changes or ["nothing to change: provider, role, trust and policy are as wanted"]:
        click.echo(change, err=True)
    click.echo(arn)
    return 0
