"""`-Y` display filters over the JSON record, with Wireshark's semantics.

    security.key_kind == "dedicated"
    apdu contains "action" && !security.tag_verified
    expert.severity == "error"              (a list field matches when any element does)
    security.invocation_counter >= 5 || frames in {3 7}

Fields are the paths of the JSON contract (`dlms-dissect fields` lists them; any path under
`fields.` names the decoded tree). Operators, as in Wireshark 4: `==` `eq` `any_eq` (any
value equals), `!=` `ne` `all_ne` (no value equals), `===` `all_eq` (every value equals), `~=`
`any_ne` (some value differs), `<` `lt` `<=` `le` `>` `gt` `>=` `ge`, `contains`, `matches`
(a regular expression, case-insensitive as in Wireshark), `in {v1 v2 ...}`; `&&` `and`, `||`
`or`, `!` `not`, parentheses; a field alone is true when present and not empty or false.
Values: "strings", numbers (decimal or 0x hex), true, false, null. An unknown field or a
filter that does not parse is a `FilterError` naming it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

#: The record's fields, as `dlms-dissect fields` lists them: path -> (type, description).
FIELDS: dict[str, tuple[str, str]] = {
    "number": ("integer", "record number in the capture (1-based)"),
    "frames": ("list of integers", "capture frames (or pasted lines) that carried the APDU"),
    "time": ("number", "capture time of the last frame, seconds since the epoch"),
    "link": ("string", "conversation: `tcp A-B`, `serial 1 hdlc 48-1`, ..."),
    "direction": ("string", "client->server, server->client or unknown"),
    "transport": ("string", "hdlc, wrapper, raw, or link for a link-layer message"),
    "apdu": ("string", "Green Book name of the outer APDU (aarq, glo-get-request, ...)"),
    "security": ("object", "the security of a ciphered APDU; null for plaintext"),
    "security.envelope": ("string", "name of the ciphered envelope"),
    "security.signature_verified": ("boolean", "general-signing: the signature verified"),
    "security.control": ("integer", "security control byte"),
    "security.suite": ("integer", "security suite (0, 1, 2)"),
    "security.authenticated": ("boolean", "SC bit 4: authentication applied"),
    "security.encrypted": ("boolean", "SC bit 5: encryption applied"),
    "security.broadcast": ("boolean", "SC bit 6: broadcast key"),
    "security.compressed": ("boolean", "SC bit 7: compression applied"),
    "security.invocation_counter": ("integer", "invocation counter"),
    "security.system_title": ("string", "hex of the system title in the IV"),
    "security.key_kind": ("string", "global-unicast, global-broadcast, dedicated, agreed,"
                          " wrapped"),
    "security.key_name": ("string", "the keystore's name of the key that deciphered"),
    "security.tag_verified": ("boolean", "the tag verified (null: not checked)"),
    "plaintext": ("string", "hex of the deciphered APDU"),
    "inner": ("string", "name of the deciphered APDU"),
    "response_time": ("number", "seconds since the request this record answers"),
    "fields": ("object", "the decoded tree; any path below names a field of it"),
    "expert": ("list of objects", "the findings"),
    "expert.severity": ("string", "error, warning or note"),
    "expert.code": ("string", "stable code, e.g. hdlc.bad-fcs"),
    "expert.message": ("string", "the finding in words"),
}
OPEN_PREFIXES = ("fields.",)

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")'
                    r'|(?P<op>===|==|!=|~=|<=|>=|&&|\|\||<|>|!|\(|\)|\{|\}|,)'
                    r'|(?P<num>-?0x[0-9A-Fa-f]+|-?\d+(?:\.\d+)?)'
                    r'|(?P<word>[A-Za-z_][\w.\-]*))')
_ALIASES = {"eq": "==", "any_eq": "==", "ne": "!=", "all_ne": "!=", "all_eq": "===",
            "any_ne": "~=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "and": "&&",
            "or": "||", "not": "!"}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "<": lambda a, b: _ordered(a, b) and a < b,
    "<=": lambda a, b: _ordered(a, b) and a <= b,
    ">": lambda a, b: _ordered(a, b) and a > b,
    ">=": lambda a, b: _ordered(a, b) and a >= b,
    "contains": lambda a, b: isinstance(a, str) and isinstance(b, str) and b in a,
    "matches": lambda a, b: isinstance(a, str) and isinstance(b, re.Pattern)
    and b.search(a) is not None,
}
_RELATIONS = ("==", "!=", "===", "~=", "<", "<=", ">", ">=", "contains", "matches")

Filter = Callable[[dict[str, Any]], bool]


class FilterError(ValueError):
    """A display filter that does not parse, or names a field the record does not have."""


def _ordered(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool)
            and not isinstance(b, bool)) or (isinstance(a, str) and isinstance(b, str))


def _equal(a: Any, b: Any) -> bool:
    """Equal, with true/false apart from 1/0."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def known_field(path: str) -> bool:
    return path in FIELDS or path.startswith(OPEN_PREFIXES)


def field_values(record: Any, path: str, names: bool = False) -> list[Any]:
    """Every value a path reaches (lists are walked: a list field has several); an enumerated
    value gives its name and its number, or its name alone with `names`."""
    return _values(record, path, names)


def _values(record: Any, path: str, names: bool = False) -> list[Any]:
    """Every value a path reaches (lists are walked: a list field has several)."""
    current = [record]
    for part in path.split("."):
        nxt: list[Any] = []
        for value in current:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict) and part in item:
                    nxt.append(item[part])
        current = nxt
    out: list[Any] = []
    for value in current:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict) and "value" in item and "name" in item:
                # an enumeration: its name or its number
                out.extend([item["name"]] if names else [item["name"], item["value"]])
            else:
                out.append(item)
    return out


def _present(record: dict[str, Any], path: str) -> bool:
    return any(v not in (None, False, "", [], {}) for v in _values(record, path))


def _tokens(text: str) -> Iterator[tuple[str, Any]]:
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"display filter: cannot parse at {text[pos:pos + 20]!r}")
        pos = m.end()
        if m.group("str") is not None:
            yield "value", bytes(m.group("str")[1:-1], "utf-8").decode("unicode_escape")
        elif m.group("num") is not None:
            n = m.group("num")
            yield "value", int(n, 16) if "0x" in n.lower() else float(n) if "." in n \
                else int(n)
        elif m.group("op") is not None:
            yield "op", m.group("op")
        else:
            word = m.group("word")
            if word in _ALIASES:
                yield "op", _ALIASES[word]
            elif word in ("contains", "matches", "in"):
                yield "op", word
            elif word in ("true", "false", "null"):
                yield "value", {"true": True, "false": False, "null": None}[word]
            else:
                yield "field", word


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = list(_tokens(text))
        self.pos = 0
        self.fields: set[str] = set()

    def peek(self) -> tuple[str, Any] | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self) -> tuple[str, Any]:
        if self.pos >= len(self.toks):
            raise FilterError("display filter: it ends too early")
        self.pos += 1
        return self.toks[self.pos - 1]

    def expr(self) -> Filter:
        left = self.term()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.term()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def term(self) -> Filter:
        left = self.factor()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.factor()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left

    def factor(self) -> Filter:
        kind, val = self.take()
        if (kind, val) == ("op", "!"):
            inner = self.factor()
            return lambda r: not inner(r)
        if (kind, val) == ("op", "("):
            inner = self.expr()
            if self.take() != ("op", ")"):
                raise FilterError("display filter: a ( is not closed")
            return inner
        if kind != "field":
            raise FilterError(f"display filter: expected a field name, got {val!r}")
        if not known_field(val):
            raise FilterError(f"display filter: {val!r} is not a field (`dlms-dissect fields`"
                              " lists them)")
        self.fields.add(val)
        nxt = self.peek()
        if nxt is not None and nxt[0] == "op" and nxt[1] in (*_RELATIONS, "in"):
            op = self.take()[1]
            if op == "in":
                return self._in(val)
            vkind, value = self.take()
            if vkind != "value":
                raise FilterError(f"display filter: expected a value after {op}, got {value!r}")
            return self._relation(val, op, value)
        return lambda r, p=val: _present(r, p)

    def _in(self, path: str) -> Filter:
        if self.take() != ("op", "{"):
            raise FilterError("display filter: `in` takes a set: in {1 2 3}")
        members = []
        while (tok := self.take()) != ("op", "}"):
            if tok == ("op", ","):
                continue
            if tok[0] != "value":
                raise FilterError(f"display filter: {tok[1]!r} in a set is not a value")
            members.append(tok[1])
        return lambda r: any(_equal(v, m) for v in _values(r, path) for m in members)

    @staticmethod
    def _relation(path: str, op: str, value: Any) -> Filter:
        if op == "matches":
            if not isinstance(value, str):
                raise FilterError("display filter: matches takes a \"regular expression\"")
            try:
                value = re.compile(value, re.IGNORECASE)
            except re.error as exc:
                raise FilterError(f"display filter: bad regular expression ({exc})") from None
        if op in ("==", "!=", "===", "~="):
            def equal(a: Any) -> bool:
                return _equal(a, value)

            if op == "==":
                return lambda r: any(equal(v) for v in _values(r, path))
            if op == "!=":
                return lambda r: not any(equal(v) for v in _values(r, path))
            if op == "===":
                return lambda r: bool(vs := _values(r, path)) and all(equal(v) for v in vs)
            return lambda r: any(not equal(v) for v in _values(r, path))
        compare = _COMPARE[op]
        return lambda r: any(compare(v, value) for v in _values(r, path))


def compile_filter(text: str) -> Filter:
    """Compile a display filter into a predicate over JSON records."""
    return _parse(text)[0]


def filter_fields(text: str) -> set[str]:
    """The record fields a filter reads (first path component: `security` for
    `security.key_kind`)."""
    return {f.split(".")[0] for f in _parse(text)[1]}


def _parse(text: str) -> tuple[Filter, set[str]]:
    parser = _Parser(text)
    if not parser.toks:
        raise FilterError("display filter: it is empty")
    result = parser.expr()
    if parser.pos != len(parser.toks):
        raise FilterError(f"display filter: unexpected {parser.toks[parser.pos][1]!r}")
    return result, parser.fields


def fields_text() -> str:
    """`dlms-dissect fields`: one field a line, as `tshark -G fields` lists them."""
    return "".join(f"{path}\t{kind}\t{text}\n" for path, (kind, text) in FIELDS.items())
