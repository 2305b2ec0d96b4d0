"""Environment expansion exactly as Litestream 0.5.17 does it, done once, here.

Litestream runs Go's `os.Expand` over the whole config text before parsing it: `${NAME}` and
`$NAME` (letters, digits, underscore), single-character names (`$1`, `$$`, `${?}`...), unset
names become empty, one pass, and `$PID` is its own process id. Anything the supervisor lists
or restores must come from the same text Litestream will use, so the child is handed the
already expanded config with `-no-expand-env` and never expands it a second time.

Two things Go does are refused instead of copied, because they never do what the user meant:
shell defaults (`${TENANT:-prod}` is the variable literally named `TENANT:-prod`, i.e. empty)
and `$PID` (restore and replicate are different processes, so the replica path would differ).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from supervisor.core.errors import ConfigError

_SPECIAL = frozenset("*#$@!?-0123456789")
_NAME = re.compile(r"[A-Za-z0-9_]*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _shell_name(s: str) -> tuple[str, int, str]:
    """Go's getShellName: (name, width consumed after '$', the expression as written)."""
    if s[0] == "{":
        if len(s) > 2 and s[1] in _SPECIAL and s[2] == "}":
            return s[1], 3, "${" + s[1] + "}"
        end = s.find("}", 1)
        if end == 1:
            return "", 2, "${}"  # bad syntax: Go eats "${}"
        if end < 0:
            return "", 1, "${"  # bad syntax: Go eats "${"
        return s[1:end], end + 1, "${" + s[1:end] + "}"
    if s[0] in _SPECIAL:
        return s[0], 1, "$" + s[0]
    name = _NAME.match(s)
    assert name is not None
    return name.group(), len(name.group()), "$" + name.group()


def comment_starts(text: str) -> list[int]:
    """Offsets where a YAML comment begins ('#' at a line start or after a blank, outside quotes)."""
    starts = []
    offset = 0
    for line in text.splitlines(keepends=True):
        quote = None
        for k, c in enumerate(line):
            if quote:
                if c == quote:
                    quote = None
            elif c in "'\"" and (k == 0 or line[k - 1] in " \t:[{,-"):
                quote = c
            elif c == "#" and (k == 0 or line[k - 1] in " \t"):
                starts.append(offset + k)
                break
        offset += len(line)
    return starts


def _in_comment(pos: int, text: str, starts: list[int]) -> bool:
    line_start = text.rfind("\n", 0, pos) + 1
    return any(line_start <= s <= pos for s in starts)


def expand(text: str, env: Mapping[str, str], source: str = "litestream.yml") -> str:
    """Expand like os.Expand with os.Getenv; ConfigError for expressions Litestream would misread
    (outside comments: a `${jwt:sub}` in a comment is harmless and stays allowed)."""
    out: list[str] = []
    comments = comment_starts(text) if "#" in text else []
    i = 0
    j = 0
    while j < len(text):
        if text[j] == "$" and j + 1 < len(text):
            out.append(text[i:j])
            name, width, written = _shell_name(text[j + 1:])
            if name == "" and width > 0:
                pass  # invalid syntax: Go drops it
            elif name == "":
                out.append("$")  # "$" followed by no name stays
            elif comments and _in_comment(j, text, comments):
                out.append(env.get(name, ""))
            else:
                if len(name) > 1 and not _IDENTIFIER.fullmatch(name):
                    raise ConfigError(f"{source}: {written} is not expanded the way a shell would: Litestream "
                                      f"looks up a variable literally named {name!r} (empty); set the variable "
                                      "itself and use ${NAME}")
                if name == "PID":
                    raise ConfigError(f"{source}: {written} is each process's own id, so restore and "
                                      "replicate would use different paths; use a stable variable")
                out.append(env.get(name, ""))
            j += width
            i = j + 1
        j += 1
    if not out:
        return text
    out.append(text[i:])
    return "".join(out)
