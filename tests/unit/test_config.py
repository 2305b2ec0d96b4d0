from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from supervisor import config
from supervisor.errors import ConfigError


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
    assert db.replica == config.Replica("b", "app", "http://minio:9000", None, None)


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
     "  - path: /d/b.db\n    replica: {bucket: b, path: /p/}\n", "two databases replicate to s3://b/p"),
])
def test_bad_configs_name_the_problem(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, text), env={})
    message = str(e.value)
    assert expected in message and "\n" not in message and str(tmp_path) in message


def test_missing_file_names_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config"):
        config.load(tmp_path / "nope.yml", {})


def test_url_form_and_env_expansion(tmp_path: Path) -> None:
    text = "dbs:\n  - path: /d/a.db\n    replica:\n      url: s3://$BUCKET/apps/a?endpoint=http://m:9000&region=eu\n"
    c = config.load(write(tmp_path, text), env={"BUCKET": "prod"})
    assert c.databases[0].replica == config.Replica("prod", "apps/a", "http://m:9000", "eu", None)


def test_child_document_forces_loopback_addr_and_fills_endpoint(tmp_path: Path) -> None:
    c = config.load(write(tmp_path, GOOD.replace("endpoint: http://minio:9000\n", "")), env={})
    doc = config.child_document(c, "http://s3.local:9000", "eu-west-1")
    assert doc["addr"] == "127.0.0.1:9090"
    replica = doc["dbs"][0]["replica"]
    assert replica["endpoint"] == "http://s3.local:9000" and replica["force-path-style"] is True
    assert replica["region"] == "eu-west-1"
    path = config.write_child_config(doc, tmp_path / "private")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert yaml.safe_load(path.read_text()) == doc
    assert [p.name for p in (tmp_path / "private").iterdir()] == ["litestream.yml"]
