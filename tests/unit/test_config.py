from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from supervisor.core.errors import ConfigError
from supervisor.litestream import config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "litestream.yml"
    p.write_text(text)
    return p


GOOD = """
addr: ":9090"
dbs:
  - path: /data/app.db
    replica:
      type: s3
      bucket: b
      path: app
      endpoint: http://minio:9000
"""


def test_good_config_parses(tmp_path: Path) -> None:
    c = config.load(write(tmp_path, GOOD), env={})
    (db,) = c.databases
    assert db.path == Path("/data/app.db")
    assert db.replica == config.Replica("b", "app", "http://minio:9000", "us-east-1", True)
    assert db.meta_dir == Path("/data/.app.db-litestream")


@pytest.mark.parametrize(("text", "expected"), [
    ("dbs:\n  - path: /d/a.db\n    replcia:\n      bucket: b\n      path: p\n", "unknown key 'replcia'"),
    ("dbs:\n  - path: /d/a.db\n    replica:\n      bucket: b\n      pth: p\n", "unknown key 'pth'"),
    ("dbs:\n  - path: /d/a.db\n    replica:\n      bucket: b\n", "has no path"),
    ("dbs:\n  - replica:\n      bucket: b\n      path: p\n", "has no 'path'"),
    ("dbs:\n  - path: /d/a.db\n    replicas:\n      - {bucket: b, path: p}\n      - {bucket: c, path: p}\n",
     "2 replicas"),
    ("dbs:\n  - path: /d/a.db\n    replica: {bucket: b, path: p}\n    replicas: [{bucket: b, path: p}]\n",
     "both 'replica' and 'replicas'"),
    ("dbs:\n  - path: /d/a.db\n    replica: {bucket: b, path: p, access-key-id: AKIA}\n", "static keys"),
    ("access-key-id: AKIA\ndbs:\n  - path: /d/a.db\n    replica: {bucket: b, path: p}\n", "static keys"),
    ("dbs:\n  - path: relative.db\n    replica: {bucket: b, path: p}\n", "must be absolute"),
    ("dbs:\n  - path: /d/a.db\n    replica: {type: file, path: /x}\n", "only s3"),
    ("dbs: [\n", "not valid YAML"),
    ("dbs: []\n", "at least one database"),
    ("dbs:\n  - path: /d/a.db\n    replica: {bucket: b, path: p}\n"
     "  - path: /d/b.db\n    replica: {bucket: b, path: p}\n", "both replicate to s3://b/p/"),
    # botocore would retry a bad port as "unreachable" until --timeout; a bad IPv6 host was a traceback
    ("dbs:\n  - path: /d/a.db\n    replica: {bucket: b, path: p, endpoint: 'http://minio:abc'}\n",
     "dbs[0].replica.endpoint 'http://minio:abc': the port is not a number from 0 to 65535"),
    ("dbs:\n  - path: /d/a.db\n    replica: {bucket: b, path: p, endpoint: 'http://[::1'}\n",
     "dbs[0].replica.endpoint 'http://[::1': Invalid IPv6 URL"),
    ("dbs:\n  - path: /d/a.db\n    replica: {url: 's3://b/p?endpoint=minio:99999'}\n",
     "the port is not a number from 0 to 65535"),
])
def test_bad_configs_name_the_problem(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, text), env={})
    message = str(e.value)
    assert expected in message and "\n" not in message and str(tmp_path) in message


def test_one_database_listed_twice_is_refused_naming_both_entries(tmp_path: Path) -> None:
    # Litestream 0.5.17 refuses this at load (`database config #2: duplicate path "/d/a.db"`, exit 1;
    # tests/unit/test_config_litestream.py asks it): the two would share one meta dir and race.
    text = "dbs:\n  - path: /d/a.db\n    replica: {bucket: b, path: p}\n" \
           "  - path: /d/b.db\n    replica: {bucket: b, path: q}\n" \
           "  - path: sqlite:///d//a.db/\n    replica: {bucket: b, path: r}\n"
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, text), env={})
    message = str(e.value)
    assert message.startswith(str(tmp_path)) and "\n" not in message
    assert "dbs[0] and dbs[2]" in message and "/d/a.db" in message


def test_missing_file_names_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config"):
        config.load(tmp_path / "nope.yml", {})


def test_url_form_and_env_expansion(tmp_path: Path) -> None:
    text = "dbs:\n  - path: /d/a.db\n    replica:\n      url: s3://$BUCKET/apps/a?endpoint=http://m:9000&region=eu\n"
    c = config.load(write(tmp_path, text), env={"BUCKET": "prod"})
    assert c.databases[0].replica == config.Replica("prod", "apps/a", "http://m:9000", "eu", True)


def test_child_document_forces_loopback_addr_and_fills_endpoint(tmp_path: Path) -> None:
    c = config.load(write(tmp_path, GOOD.replace("endpoint: http://minio:9000\n", "")), env={},
                    default_endpoint="http://s3.local:9000", default_region="eu-west-1")
    doc = config.child_document(c)
    assert doc["addr"] == "127.0.0.1:9090"
    replica = doc["dbs"][0]["replica"]
    assert replica["endpoint"] == "http://s3.local:9000" and replica["force-path-style"] is True
    assert replica["region"] == "eu-west-1"
    path = config.write_child_config(doc, tmp_path / "private", "litestream.yml")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert yaml.safe_load(path.read_text()) == doc
    assert [p.name for p in (tmp_path / "private").iterdir()] == ["litestream.yml"]


# --- Litestream 0.5.17's own rules (issue 11, items 2, 3, 12, 23, 24, 25) ---

EVERY_KEY = """
addr: ":9090"
mcp-addr: ":3001"
sync-interval: 1s
l0-retention: 5m
l0-retention-check-interval: 15s
verify-compaction: true
shutdown-sync-timeout: 30s
shutdown-sync-interval: 500ms
sign-accept-encoding: false
heartbeat-url: https://hc.example/ping
heartbeat-interval: 5m
snapshot: {interval: 24h, retention: 168h}
validation: {interval: 12h}
retention: {enabled: true}
levels: [{interval: 5m}, {interval: 1h}]
logging: {level: info, type: text, stderr: false, source: false}
socket: {enabled: false, path: /tmp/ls.sock, permissions: 0600}
dbs:
  - path: /data/app.db
    meta-path: /data/.meta
    monitor-interval: 1s
    checkpoint-interval: 1m
    busy-timeout: 1s
    min-checkpoint-page-count: 1000
    truncate-page-n: 10000
    max-sync-wal-bytes: 1000000
    restore-if-db-not-exists: false
    snapshot: {interval: 1h}
    replica:
      type: s3
      bucket: b
      path: app
      endpoint: http://minio:9000
      region: us-east-1
      force-path-style: true
      sign-payload: true
      sign-accept-encoding: false
      require-content-md5: false
      skip-verify: false
      storage-class: STANDARD
      part-size: 5MB
      concurrency: 5
      sync-interval: 1s
      validation-interval: 1h
      max-sync-ltx-files: 10
      auto-recover: false
      sse-kms-key-id: key
"""


def test_every_documented_key_is_accepted(tmp_path: Path) -> None:
    c = config.load(write(tmp_path, EVERY_KEY), env={})
    doc = config.child_document(c)
    assert doc["addr"] == "127.0.0.1:9090" and doc["mcp-addr"] == "127.0.0.1:3001"
    assert doc["l0-retention"] == "5m" and doc["dbs"][0]["replica"]["require-content-md5"] is False
    # 0.5.17 reads it (upstream issue 1424: a Garage endpoint refuses a signed Accept-Encoding)
    assert doc["sign-accept-encoding"] is False and doc["dbs"][0]["replica"]["sign-accept-encoding"] is False


@pytest.mark.parametrize(("where", "key"), [
    ("top", "require-content-md"), ("db", "bucket"), ("replica", "meta-path"), ("top", "path"),
    ("db", "l0-retention"), ("logging", "levle"),
])
def test_keys_are_checked_per_section(tmp_path: Path, where: str, key: str) -> None:
    db = "  - path: /d/a.db\n    replica: {bucket: b, path: p}\n"
    text = {"top": f"{key}: x\ndbs:\n{db}",
            "db": f"dbs:\n  - path: /d/a.db\n    {key}: x\n    replica: {{bucket: b, path: p}}\n",
            "replica": f"dbs:\n  - path: /d/a.db\n    replica: {{bucket: b, path: p, {key}: x}}\n",
            "logging": f"logging: {{{key}: x}}\ndbs:\n{db}"}[where]
    with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
        config.load(write(tmp_path, text), env={})


def with_key(section: str, key: str, value: object) -> dict:
    """A valid config with `key: value` added in `section` (a config.SECTIONS name)."""
    replica: dict = {"bucket": "b", "path": "p"}
    db: dict = {"path": "/d/a.db"}
    if section.startswith("dbs[].replicas[]"):
        db["replicas"] = [replica]
    else:
        db["replica"] = replica
    doc = {"dbs": [db]}
    {"": doc, "dbs[]": db, "dbs[].replica": replica, "dbs[].replicas[]": replica}[section][key] = value
    return doc


@pytest.mark.parametrize(("section", "key"), [(s, k) for s, keys in config.REFUSED.items() for k in keys])
def test_keys_refused_on_purpose_say_why_and_an_empty_value_is_unset(section: str, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        config.resolve(with_key(section, key, "x"), Path("ls.yml"), env={})
    message = str(e.value)
    assert message.startswith("ls.yml: ") and key in message and "unknown key" not in message
    # `access-key-id: $AWS_ACCESS_KEY_ID` with the variable unset: Litestream reads no key either
    config.resolve(with_key(section, key, ""), Path("ls.yml"), env={})


def test_dir_beside_path_is_refused_here_not_when_litestream_starts(tmp_path: Path) -> None:
    text = "dbs:\n  - path: /d/a.db\n    dir: /d\n    replica: {bucket: b, path: p}\n"
    with pytest.raises(ConfigError, match=r"dbs\[0\] uses 'dir'"):
        config.load(write(tmp_path, text), env={})


@pytest.mark.parametrize(("path", "prefix"), [
    ("/app", "/app/"),  # verbatim, as Litestream writes /app/0000/...
    ("app/", "app//"),
    ("apps/a", "apps/a/"),
])
def test_replica_path_is_used_verbatim(tmp_path: Path, path: str, prefix: str) -> None:
    c = config.load(write(tmp_path, f"dbs:\n  - path: /d/a.db\n    replica: {{bucket: b, path: '{path}'}}\n"), env={})
    assert c.databases[0].replica.prefix == prefix
    assert config.child_document(c)["dbs"][0]["replica"]["path"] == path


@pytest.mark.parametrize(("url", "bucket", "path", "endpoint"), [
    ("s3://b//apps/./a/", "b", "apps/a", None),  # path.Clean, leading slash trimmed
    ("s3://b.minio.local:9000/apps/a", "b", "apps/a", "http://minio.local:9000"),  # host-style (MinIO)
    ("s3://b.s3.eu-west-1.amazonaws.com/apps/a", "b", "apps/a", None),
])
def test_url_paths_follow_litestream(tmp_path: Path, url: str, bucket: str, path: str, endpoint: str | None) -> None:
    c = config.load(write(tmp_path, f"dbs:\n  - path: /d/a.db\n    replica: {{url: '{url}'}}\n"), env={})
    r = c.databases[0].replica
    assert (r.bucket, r.path, r.endpoint) == (bucket, path, endpoint)
    child = config.child_document(c)["dbs"][0]["replica"]
    assert "url" not in child and child["bucket"] == bucket and child["path"] == path


def test_credentials_in_url_are_refused_without_echoing_them(tmp_path: Path) -> None:
    text = "dbs:\n  - path: /d/a.db\n    replica: {url: 's3://AKIAEXAMPLE:supersecretvalue@b/app'}\n"
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, text), env={})
    assert "credentials" in str(e.value) and "supersecretvalue" not in str(e.value)


def test_url_with_bucket_or_path_is_refused_as_litestream_does(tmp_path: Path) -> None:
    text = "dbs:\n  - path: /d/a.db\n    replica: {url: 's3://b/app', path: other}\n"
    with pytest.raises(ConfigError, match="both url and path"):
        config.load(write(tmp_path, text), env={})


def test_expansion_happens_once_and_the_child_never_expands_again(tmp_path: Path) -> None:
    text = "dbs:\n  - path: /d/a.db\n    replica: {bucket: b, path: '${TENANT}/app'}\n"
    c = config.load(write(tmp_path, text), env={"TENANT": "a$HOME"})
    assert c.databases[0].replica.path == "a$HOME/app"
    assert config.child_document(c)["dbs"][0]["replica"]["path"] == "a$HOME/app"
    from supervisor.litestream.binary import replicate_cmd, restore_cmd
    assert "-no-expand-env" in replicate_cmd("ls", Path("/c.yml"))
    assert "-no-expand-env" in restore_cmd("ls", Path("/c.yml"), Path("/d/a.db"), Path("/d/t"))


@pytest.mark.parametrize("expression", ["${TENANT:-prod}", "${TENANT:=prod}", "${TENANT-x}", "$PID", "${PID}"])
def test_expressions_litestream_would_misread_are_config_errors(tmp_path: Path, expression: str) -> None:
    text = f"dbs:\n  - path: /d/a.db\n    replica: {{bucket: b, path: '{expression}/app'}}\n"
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, text), env={"TENANT": "t"})
    assert expression in str(e.value)


def test_meta_path_is_resolved_once_with_env_and_home(tmp_path: Path) -> None:
    text = "dbs:\n  - path: /d/a.db\n    meta-path: ${META}/x\n    replica: {bucket: b, path: p}\n" \
           "  - path: ~/b.db\n    meta-path: ~/meta-b\n    replica: {bucket: b, path: q}\n"
    c = config.load(write(tmp_path, text), env={"META": "/var/meta", "HOME": "/home/app"})
    assert c.databases[0].meta_dir == Path("/var/meta/x")
    assert c.databases[1].path == Path("/home/app/b.db") and c.databases[1].meta_dir == Path("/home/app/meta-b")
    assert config.child_document(c)["dbs"][0]["meta-path"] == "/var/meta/x"
