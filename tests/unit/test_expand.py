"""Go's os.Expand, as Litestream 0.5.17 applies it to the config text (issue 11, item 2)."""

from __future__ import annotations

import pytest

from supervisor.core.errors import ConfigError
from supervisor.litestream.expand import expand

ENV = {"A": "x", "AB": "y", "1": "one", "HOME": "/h"}


@pytest.mark.parametrize(("text", "expected"), [
    ("$A", "x"), ("${A}", "x"), ("$AB", "y"), ("${AB}c", "yc"), ("$ABc", ""),  # $ABc is the name ABc
    ("$1", "one"), ("$12", "one2"),  # a digit is a one-character name
    ("$", "$"), ("a$", "a$"), ("$ x", "$ x"), ("$/", "$/"),  # no name: the $ stays
    ("${}", ""), ("${A", "A"),  # bad syntax: Go eats "${}" and "${"
    ("$$", ""), ("${?}", ""),  # special one-character names, unset
    ("$UNSET/p", "/p"), ("a${A}b$A", "axbx"),
    ("no dollars", "no dollars"),
])
def test_expands_like_go(text: str, expected: str) -> None:
    assert expand(text, ENV) == expected


def test_one_pass_only() -> None:
    assert expand("$V", {"V": "$HOME"}) == "$HOME"


@pytest.mark.parametrize("text", ["${A:-d}", "${A:=d}", "${A:?d}", "${A-d}", "${A+d}", "$PID"])
def test_shell_defaults_and_pid_are_refused_naming_the_expression(text: str) -> None:
    with pytest.raises(ConfigError) as e:
        expand(f"path: {text}", ENV, "/etc/litestream.yml")
    assert text in str(e.value) and "/etc/litestream.yml" in str(e.value)


def test_expressions_in_comments_are_expanded_but_never_refused() -> None:
    text = "# scoped to ${jwt:sub} and $PID\npath: ${A} # ${B:-x}\nother: '#${A}'\n"
    assert expand(text, ENV) == "# scoped to  and \npath: x # \nother: '#x'\n"
    with pytest.raises(ConfigError, match=r"\$\{B:-x\}"):
        expand("path: '${A}#${B:-x}'\n", ENV)
