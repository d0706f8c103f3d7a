"""`-Y` display filters over the JSON record, Wireshark style.

    security.key_kind == "dedicated"
    apdu contains "action" and not security.tag_verified
    expert                      (true when the list is not empty)
    security.invocation_counter >= 5 or frames contains 3

Operators: == != < <= > >= contains matches; and, or, not, parentheses. Values: "strings",
numbers (decimal or 0x hex), true, false, null.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>==|!=|<=|>=|<|>|\(|\))|'
                    r'(?P<word>[A-Za-z_][\w.\-]*)|(?P<num>0x[0-9A-Fa-f]+|-?\d+(?:\.\d+)?))')
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    "<": lambda a, b: a is not None and a < b, "<=": lambda a, b: a is not None and a <= b,
    ">": lambda a, b: a is not None and a > b, ">=": lambda a, b: a is not None and a >= b,
    "contains": lambda a, b: a is not None and b in a,
    "matches": lambda a, b: isinstance(a, str) and re.search(b, a) is not None,
}

Filter = Callable[[dict[str, Any]], bool]


class FilterError(ValueError):
    """A display filter that does not parse."""


def _lookup(record: dict[str, Any], path: str) -> Any:
    cur: Any = record
    for part in path.split("."):
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list):
            found = [c.get(part) for c in cur if isinstance(c, dict)]
            cur = found
        else:
            return None
    if isinstance(cur, dict) and "value" in cur and "name" in cur:
        return cur["name"]
    return cur


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"cannot parse filter at {text[pos:pos + 20]!r}")
        pos = m.end()
        if m.group("str") is not None:
            out.append(("value", bytes(m.group("str")[1:-1], "utf-8").decode("unicode_escape")))
        elif m.group("num") is not None:
            n = m.group("num")
            out.append(("value", int(n, 16) if n.lower().startswith("0x") else
                        float(n) if "." in n else int(n)))
        elif m.group("op") is not None:
            out.append(("op", m.group("op")))
        else:
            w = m.group("word")
            if w in ("and", "or", "not", "contains", "matches"):
                out.append(("op", w))
            elif w in ("true", "false", "null"):
                out.append(("value", {"true": True, "false": False, "null": None}[w]))
            else:
                out.append(("field", w))
    return out


def compile_filter(text: str) -> Filter:
    """Compile a display filter into a predicate over JSON records."""
    toks = _tokens(text)
    pos = 0

    def peek() -> tuple[str, Any] | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> tuple[str, Any]:
        nonlocal pos
        if pos >= len(toks):
            raise FilterError("filter ends too early")
        pos += 1
        return toks[pos - 1]

    def expr() -> Filter:
        left = term()
        while peek() == ("op", "or"):
            take()
            right = term()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def term() -> Filter:
        left = factor()
        while peek() == ("op", "and"):
            take()
            right = factor()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left

    def factor() -> Filter:
        kind, val = take()
        if (kind, val) == ("op", "not"):
            inner = factor()
            return lambda r: not inner(r)
        if (kind, val) == ("op", "("):
            inner = expr()
            if take() != ("op", ")"):
                raise FilterError("missing )")
            return inner
        if kind != "field":
            raise FilterError(f"expected a field name, got {val!r}")
        nxt = peek()
        if nxt is not None and nxt[0] == "op" and nxt[1] in _OPS:
            op = _OPS[take()[1]]
            vkind, value = take()
            if vkind != "value":
                raise FilterError(f"expected a value after the operator, got {value!r}")
            return lambda r, p=val: op(_lookup(r, p), value)
        return lambda r, p=val: bool(_lookup(r, p))

    result = expr()
    if pos != len(toks):
        raise FilterError(f"unexpected {toks[pos][1]!r} in filter")
    return result


def filter_fields(text: str) -> set[str]:
    """The record fields a filter reads (first path component: `security` for
    `security.key_kind`)."""
    return {val.split(".")[0] for kind, val in _tokens(text) if kind == "field"}
