"""A-XDR compact-array: the TypeDescription (`TypeDescriptionField`) and decoding the untagged
contents it describes (`decode_compact_array`); both raise ValueError on malformed input."""

from __future__ import annotations

from typing import Any

from scapy.fields import Field
from scapy.packet import Packet

from .axdr_values import DATA_TYPES, MAX_DEPTH, TAG_OF_NAME, basic_value
from .expert import add_finding
from .fields import decode_length

# Untagged value sizes of the types a TypeDescription may name: fixed, or length-prefixed.
_FIXED_SIZE = {0: 0, 3: 1, 5: 4, 6: 4, 13: 1, 15: 1, 16: 2, 17: 1, 18: 2, 20: 8, 21: 8, 22: 1,
               23: 4, 24: 8, 25: 12, 26: 5, 27: 4, 255: 0}
_LENGTH_PREFIXED = (4, 9, 10, 12)


def _parse_description(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    """Parse a TypeDescription at `pos`: a tag (int), ("array", n, node) or ("structure", [...])."""
    if depth > MAX_DEPTH:
        raise ValueError(f"type description nested deeper than {MAX_DEPTH}")
    if pos >= len(buf):
        raise ValueError("type description truncated")
    tag = buf[pos]
    if tag == 1:
        if pos + 3 > len(buf):
            raise ValueError("array type description truncated")
        count = (buf[pos + 1] << 8) | buf[pos + 2]
        node, end = _parse_description(buf, pos + 3, depth + 1)
        if count and _min_size(node) == 0:
            raise ValueError("array of zero-size elements")
        return ("array", count, node), end
    if tag == 2:
        count, used = decode_length(buf[pos + 1:pos + 6])
        pos += 1 + used
        if count > len(buf) - pos:
            raise ValueError(f"structure type description with {count} members in "
                             f"{len(buf) - pos} bytes")
        members = []
        for _ in range(count):
            node, pos = _parse_description(buf, pos, depth + 1)
            members.append(node)
        return ("structure", members), pos
    if tag not in _FIXED_SIZE and tag not in _LENGTH_PREFIXED:
        raise ValueError(f"type tag {tag} not allowed in a type description")
    return tag, pos + 1


def _min_size(node: Any) -> int:
    if isinstance(node, int):
        return _FIXED_SIZE.get(node, 1)
    if node[0] == "array":
        return node[1] * _min_size(node[2])
    return sum(_min_size(n) for n in node[1])


def _describe(node: Any) -> str:
    if isinstance(node, int):
        return DATA_TYPES.get(node, str(node))
    if node[0] == "array":
        return f"array[{node[1]}] of {_describe(node[2])}"
    return "structure{" + ", ".join(_describe(n) for n in node[1]) + "}"


def _read_untagged(node: Any, buf: bytes, pos: int) -> tuple[Any, int]:
    """Decode one untagged value described by `node` at `pos`; ValueError when it overruns."""
    if isinstance(node, int):
        size = _FIXED_SIZE.get(node)
        if size is None:  # length-prefixed
            n, used = decode_length(buf[pos:pos + 5])
            start = pos + used
            nbytes = (n + 7) // 8 if node == 4 else n
            end = start + nbytes
            if end > len(buf):
                raise ValueError("compact-array value overruns its contents")
            return basic_value(node, buf[start:end], n), end
        end = pos + size
        if end > len(buf):
            raise ValueError("compact-array value overruns its contents")
        return basic_value(node, buf[pos:end], 0), end
    if node[0] == "array":
        out = []
        for _ in range(node[1]):
            value, pos = _read_untagged(node[2], buf, pos)
            out.append(value)
        return out, pos
    out = []
    for member in node[1]:
        value, pos = _read_untagged(member, buf, pos)
        out.append(value)
    return out, pos


def decode_compact_array(description: bytes, contents: bytes) -> list[Any]:
    """Values of a compact array (one per element described); ValueError when they do not fit."""
    node, end = _parse_description(description, 0, 0)
    if end != len(description):
        raise ValueError("bytes after the type description")
    smallest = _min_size(node)
    if smallest == 0:
        raise ValueError("zero-size compact-array elements")
    if contents and smallest > len(contents):
        raise ValueError(f"an element needs {smallest} bytes, the contents hold {len(contents)}")
    values, pos = [], 0
    while pos < len(contents):
        value, pos = _read_untagged(node, contents, pos)
        values.append(value)
    return values


class TypeDescriptionField(Field[bytes, bytes]):
    """A compact-array TypeDescription, kept as its bytes and shown as a readable type."""

    def __init__(self, name: str, default: bytes = b"\x11") -> None:
        super().__init__(name, default)

    def any2i(self, pkt: Packet | None, x: Any) -> bytes:
        if isinstance(x, int):
            return bytes([x])
        if isinstance(x, str):
            return bytes([TAG_OF_NAME[x]])
        return bytes(x)

    def addfield(self, pkt: Packet, s: bytes, val: bytes | None) -> bytes:
        return s + (val or b"")

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, bytes]:
        try:
            _, end = _parse_description(s, 0, 0)
        except ValueError as exc:
            add_finding(pkt, "error", "axdr.bad-type-description", f"compact-array: {exc}")
            raise
        return s[end:], s[:end]

    def i2len(self, pkt: Packet, x: Any) -> int:
        return len(x or b"")

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        try:
            node, end = _parse_description(x, 0, 0)
        except (ValueError, TypeError):
            return repr(x)
        return _describe(node) if end == len(x) else repr(x)


__all__ = ["TypeDescriptionField", "decode_compact_array"]
