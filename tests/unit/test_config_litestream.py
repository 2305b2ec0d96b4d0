"""litestream.yml's key sets against the real Litestream 0.5.17, in both directions.

Litestream decodes its config with gopkg.in/yaml.v2, which skips an unknown key without a word but
reports every value of the wrong type with its line before it refuses the file:
`line 7: cannot unmarshal !!map into string`. So a key is one Litestream reads in a place exactly
when a wrong-typed value under it makes the load fail: a mapping is wrong for every scalar and list
field, a plain string for every struct. `litestream databases` loads the config and lists it, with
no network (checked with strace: no socket calls).

Candidates are the `yaml:"..."` struct tags in the binary (yaml.v2 would also read an untagged
field by its lowercased name; 0.5.17's config structs tag every field), plus typos as a control.
Several keys go in one file, one per line, and the keys a run reports are taken out and the rest
run again until a load reports no type error: Litestream reads `snapshot` in a pass of its own
first, whose error hides the others. Checked once against one key per file (every candidate in
every place, 28 s): the same sets in all 14 places, and none in a place that does not exist.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from supervisor.core.errors import ConfigError
from supervisor.litestream import config

TYPE_ERROR = re.compile(r"^  line (\d+): cannot unmarshal (.+)$", re.M)
# A wrong type for every Go type there is: a mapping for scalars and lists, a string for structs.
WRONG_VALUES = ("{probe: 1}", "probe")
# Never keys: if the probe called them known it would be reading something else than type errors.
NOT_KEYS = ("replcia", "pth", "buckett", "sign-accept-encodings")
# What yaml.v2 names a Go type that holds no keys of its own (ByteSize reads itself as a string).
SCALAR_TYPES = {"string", "bool", "int", "int64", "uint32", "time.Duration", "[]string"}


def document(section: str, keys: list[str], value: str) -> tuple[str, dict[int, str]]:
    """YAML with `key: value` for each key, one per line, in `section`; and the line of each key."""
    lines: list[str] = []
    indent = ""
    for step in section.split(".") if section else []:
        lines.append(f"{indent}{step.removesuffix('[]')}:")
        indent += "  "
        if step.endswith("[]"):
            lines.append(f"{indent}-")
            indent += "  "
    first = len(lines) + 1
    lines += [f"{indent}{key}: {value}" for key in keys]
    return "\n".join(lines) + "\n", {first + i: key for i, key in enumerate(keys)}


def probe(binary: str, directory: Path, section: str, candidates: list[str]) -> dict[str, str]:
    """The candidates Litestream reads in `section`, each with the Go type it refused a probe as."""
    known: dict[str, str] = {}
    runs = 0
    for value in WRONG_VALUES:
        remaining = [k for k in candidates if k not in known]
        while remaining:
            text, key_at = document(section, remaining, value)
            path = directory / f"{section or 'top'}-{runs}.yml"
            runs += 1
            path.write_text(text)
            run = load(binary, path)
            errors = {int(line): go_type for line, go_type in TYPE_ERROR.findall(run.stderr + run.stdout)}
            if not errors:
                break
            assert set(errors) <= set(key_at), f"a type error on a line that holds no probe:\n{text}\n{run.stderr}"
            known.update({key_at[line]: go_type for line, go_type in errors.items()})
            remaining = [k for k in remaining if k not in known]
    return known


@pytest.fixture(scope="module")
def binary() -> str:
    from tests.bed.testbed import litestream_binary
    try:
        found = litestream_binary()
    except RuntimeError as e:
        pytest.fail(f"{e}; run `make deps`")  # never a skip: the point is to ask the real binary
    version = subprocess.run([found, "version"], capture_output=True, text=True, timeout=30).stdout.strip()
    if version != "0.5.17":
        pytest.fail(f"{found} is Litestream {version!r}, the key sets are 0.5.17's: run `make deps`")
    return found


def load(binary: str, config_file: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`litestream databases`: loads and validates the config as every command does, no network."""
    # No AWS_* variables: nothing but the file decides the answer.
    return subprocess.run([binary, "databases", "-no-expand-env", "-config", str(config_file), *args],
                          capture_output=True, text=True, timeout=30, env={"PATH": os.defpath, **(env or {})})


@pytest.fixture(scope="module")
def litestream(binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, str]]]:
    """Per config.SECTIONS place, the keys Litestream 0.5.17 reads there."""
    tags = {m.decode() for m in re.findall(rb'yaml:"([a-z0-9-]+)"', Path(binary).read_bytes())}
    candidates = sorted(tags | set(NOT_KEYS))
    directory = tmp_path_factory.mktemp("keys")
    with ThreadPoolExecutor(max_workers=len(config.SECTIONS)) as pool:
        answers = pool.map(lambda s: probe(binary, directory, s, candidates), config.SECTIONS)
        yield dict(zip(config.SECTIONS, answers, strict=True))


def test_every_key_we_accept_is_one_litestream_reads_in_that_place(litestream: dict[str, dict[str, str]]) -> None:
    extra = {s: sorted(config.SECTIONS[s] - litestream[s].keys()) for s in config.SECTIONS}
    assert not {s: keys for s, keys in extra.items() if keys}, "accepted here, ignored by Litestream 0.5.17"


def test_every_key_litestream_reads_is_accepted_or_refused_on_purpose(litestream: dict[str, dict[str, str]]) -> None:
    missing = {s: sorted(litestream[s].keys() - config.SECTIONS[s]) for s in config.SECTIONS}
    assert not {s: keys for s, keys in missing.items() if keys}, "read by Litestream 0.5.17, unknown here"
    # A refusal on purpose is of a key Litestream reads, and the key check lets it through to it.
    for section, refused in config.REFUSED.items():
        assert refused.keys() <= litestream[section].keys() & config.SECTIONS[section], section


def test_every_key_holding_a_section_of_its_own_is_checked_inside(litestream: dict[str, dict[str, str]]) -> None:
    """A struct (or list of structs) under a key: its keys are a place of ours too, or a typo there passes."""
    unchecked = []
    for section, known in litestream.items():
        for key, go_type in known.items():
            if go_type.split(" into ", 1)[-1] in SCALAR_TYPES:
                continue
            child = f"{section}.{key}" if section else key
            is_list = go_type.split(" into ", 1)[-1].startswith("[]")
            if (f"{child}[]" if is_list else child) not in config.SECTIONS:
                unchecked.append((child, go_type))
    assert not unchecked


def test_the_probe_tells_typos_from_keys(litestream: dict[str, dict[str, str]]) -> None:
    assert not {s: sorted(k.keys() & set(NOT_KEYS)) for s, k in litestream.items() if k.keys() & set(NOT_KEYS)}
    assert litestream[""]["snapshot"].endswith("into main.SnapshotConfig")  # found past its own pass


def entries(paths: list[str]) -> list[dict]:
    """One `dbs` entry per path, each with a replica location of its own."""
    return [{"path": p, "replica": {"type": "s3", "bucket": "b", "path": f"p{i}"}} for i, p in enumerate(paths)]


def test_database_paths_are_the_ones_litestream_lists(binary: str, tmp_path: Path) -> None:
    """Our db path is Litestream's (sqlite:// cut, ~ expanded, Go's filepath.Clean), so the lease,
    the lag probe and the duplicate check name the file Litestream opens."""
    home = pwd.getpwuid(os.getuid()).pw_dir  # Litestream asks the user database, not $HOME
    raw = ["/d/a.db", "//d/b.db", "/d//c.db/", "sqlite:///d/./x/../e.db", "sqlite3:///d/f.db", "~/g.db",
           "///d/h.db"]
    dbs = entries(raw)
    listed = tmp_path / "litestream.yml"
    listed.write_text(yaml.safe_dump({"dbs": dbs}))
    run = load(binary, listed, "-json", env={"HOME": home})
    assert run.returncode == 0, run.stderr
    theirs = [db["path"] for db in json.loads(run.stdout)]
    ours = [str(db.path) for db in config.resolve({"dbs": dbs}, listed, {"HOME": home}).databases]
    assert ours == theirs


@pytest.mark.parametrize(("first", "second"), [
    ("/d/a.db", "/d/a.db"), ("/d/a.db", "sqlite:///d//a.db/"), ("/d/a.db", "//d/./x/../a.db"),
    ("/d/a.db", "/d/b.db"), ("/d/a.db", "/d/A.db"), ("/d/a.db", "/d/a.db-wal"),
])
def test_a_database_listed_twice_is_refused_exactly_when_litestream_refuses_it(
        binary: str, tmp_path: Path, first: str, second: str) -> None:
    dbs = entries([first, second])
    source = tmp_path / "litestream.yml"
    source.write_text(yaml.safe_dump({"dbs": dbs}))
    run = load(binary, source)
    theirs = "duplicate path" in run.stderr
    assert run.returncode == (1 if theirs else 0), run.stderr
    try:
        config.resolve({"dbs": dbs}, source, {})
        ours = False
    except ConfigError as e:
        assert "dbs[0] and dbs[1]" in str(e)
        ours = True
    assert ours == theirs
