from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.core import settings
from supervisor.core import workload as workloads
from supervisor.core.errors import ConfigError


def test_aws_variables_are_read_like_an_sdk() -> None:
    env = {"AWS_ROLE_ARN": "arn:r", "AWS_WEB_IDENTITY_TOKEN_FILE": "/t", "AWS_ENDPOINT_URL": "http://all:1",
           "AWS_ENDPOINT_URL_STS": "http://sts:2/", "AWS_ENDPOINT_URL_S3": "http://s3:3",
           "AWS_DEFAULT_REGION": "eu-1", "HOSTNAME": "app-0"}
    s = settings.build({}, env)
    assert s.aws.role_arn == "arn:r" and s.aws.token_file == Path("/t")
    assert s.aws.sts_endpoint == "http://sts:2" and s.aws.s3_endpoint == "http://s3:3"
    assert s.aws.region == "eu-1" and s.aws.session_name == "app-0"
    assert s.config_path == Path("/etc/litestream.yml")


def test_flags_beat_environment() -> None:
    env = {"AWS_ROLE_ARN": "arn:env", "AWS_ENDPOINT_URL": "http://all:1", "AWS_REGION": "r1"}
    s = settings.build({"role_arn": "arn:flag", "sts_endpoint": "http://flag:9", "region": "r2"}, env)
    assert (s.aws.role_arn, s.aws.sts_endpoint, s.aws.region) == ("arn:flag", "http://flag:9", "r2")
    assert settings.build({}, {"AWS_ENDPOINT_URL": "http://all:1"}).aws.sts_endpoint == "http://all:1"


@pytest.mark.parametrize(("options", "env", "expected"), [
    ({"sts_endpoint": "minio:9000"}, {}, "--sts-endpoint"),
    ({"sts_endpoint": "http://minio:abc"}, {}, "--sts-endpoint .*: .*the port is not a number"),
    ({"sts_endpoint": "http://[::1"}, {}, "--sts-endpoint .*: .*Invalid IPv6 URL"),
    ({"sts_endpoint": "http://"}, {}, "--sts-endpoint .*: .*no host"),
    ({}, {"AWS_ENDPOINT_URL_S3": "https://s3:99999"}, "AWS_ENDPOINT_URL_S3: .*the port is not a number"),
    ({"ca_bundle": "/nope/ca.pem"}, {}, "--ca-bundle"),
    ({"health_addr": "9091"}, {}, "--health-addr"),
])
def test_bad_values_name_the_option(options: dict, env: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        settings.build(options, env)


def test_web_identity_inputs_required() -> None:
    with pytest.raises(ConfigError, match="AWS_ROLE_ARN"):
        settings.require_web_identity(settings.build({}, {}).aws)
    with pytest.raises(ConfigError, match="AWS_WEB_IDENTITY_TOKEN_FILE"):
        settings.require_web_identity(settings.build({}, {"AWS_ROLE_ARN": "a"}).aws)


def test_session_name_is_sanitised() -> None:
    assert workloads.default_session_name({"POD_NAME": "my pod/0"}) == "my-pod-0"
    assert len(workloads.default_session_name({"POD_NAME": "x" * 100})) == 64


def test_minio_role_arn_is_derived_from_the_client_id() -> None:
    """MinIO's role id is base64url(sha1(client id)) unpadded; it printed exactly this in the seed setup."""
    from supervisor.identity import minio
    assert minio.role_arn("sts.amazonaws.com") == "arn:minio:iam:::role/oxnUw3DAuQF1uggjXGxI2AmW8IA"
    assert minio.role_arn("sts.amazonaws.com", "eu-west-1") == \
        "arn:minio:iam:eu-west-1::role/oxnUw3DAuQF1uggjXGxI2AmW8IA"


def test_check_names_the_role_minio_derives() -> None:
    from supervisor.core import settings as settings_mod
    from supervisor.jobs.check import Report, _role_step
    lines: list[str] = []
    report = Report(lines.append)
    wrong = settings_mod.build({"role_arn": "arn:minio:iam:::role/REPLACE-ME"}, env={})
    _role_step(wrong, report)
    right = settings_mod.build({"role_arn": "arn:minio:iam:::role/oxnUw3DAuQF1uggjXGxI2AmW8IA"}, env={})
    _role_step(right, report)
    assert lines[0].startswith("[FAIL] role") and "oxnUw3DAuQF1uggjXGxI2AmW8IA" in lines[0]
    assert "IAM Roles" in lines[0] and lines[1].startswith("[ok]   role") and report.failed == 1


def test_one_database_settings_need_no_litestream_yml() -> None:
    from supervisor.core import settings as settings_mod
    from supervisor.litestream import config as lsconfig
    env = {"POD_NAME": "web-7d4b9c8f6d-x2x9q", "POD_TEMPLATE_HASH": "7d4b9c8f6d", "POD_NAMESPACE": "prod",
           "POD_SERVICE_ACCOUNT": "default", "AWS_ENDPOINT_URL_S3": "http://minio:9000"}
    s = settings_mod.build({"db": "/data/app.db", "bucket": "litestream", "sync_interval": "1s"}, env=env)
    config = lsconfig.load_for(s)
    (db,) = config.databases
    assert db.replica.prefix == "system:serviceaccount:prod:default/web/app.db/"
    assert db.replica.endpoint == "http://minio:9000" and db.replica.force_path_style is True
    assert lsconfig.child_document(config)["dbs"][0]["replica"]["sync-interval"] == "1s"


@pytest.mark.parametrize(("options", "env", "names"), [
    ({"db": "/d/a.db", "bucket": "b", "replica_path": "p", "config": "/etc/l.yml"}, {}, "--config"),
    ({"db": "/d/a.db", "bucket": "b", "replica_path": "p"}, {"LITESTREAM_CONFIG": "/x.yml"}, "LITESTREAM_CONFIG"),
    ({"db": "relative.db", "bucket": "b", "replica_path": "p"}, {}, "--db"),
    ({"db": "/d/a.db", "bucket": "b"}, {}, "--replica-path"),
    ({"db": "/d/a.db", "bucket": "b"}, {"POD_NAMESPACE": "n", "POD_SERVICE_ACCOUNT": "s"}, "--workload"),
    ({"replica_path": "p"}, {}, "--replica-path"),
    ({"db": "/d/a.db", "bucket": "b", "replica_path": "p", "endpoint": "minio:9000"}, {}, "--endpoint"),
])
def test_one_database_settings_errors_name_the_flag(options: dict[str, str], env: dict[str, str], names: str) -> None:
    from supervisor.core import settings as settings_mod
    from supervisor.core.errors import ConfigError
    with pytest.raises(ConfigError) as e:
        settings_mod.build(options, env=env)
    assert names in str(e.value) and "\n" not in str(e.value)
