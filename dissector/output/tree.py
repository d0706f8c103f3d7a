"""`-V`: a record's packets in the project's own words, as Wireshark's packet details show them:
one line a field, bytes in hex with their length, enumerations by name and value, numbers
with their hex, nested packets indented, the deciphered APDU under its envelope. (Scapy's
`show()` stays for interactive sessions.)"""

from __future__ import annotations

from typing import Any

from scapy.packet import NoPayload, Packet, Raw

from dissector.output.fields import MAX_DEPTH, layer_name, present_fields
from layers.tree import deciphered_of

INDENT = "    "
MAX_HEX = 256  # bytes shown of one value; the length says how many there are


def packet_lines(pkt: Packet | None, level: int = 1, depth: int = 0) -> list[str]:
    """The lines of a packet and of its payloads, indented `level` steps."""
    out: list[str] = []
    while pkt is not None and not isinstance(pkt, NoPayload) and depth <= MAX_DEPTH:
        pad = INDENT * level
        if isinstance(pkt, Raw):
            out.append(f"{pad}{pkt.name}: {_bytes(bytes(pkt.load))}")
            break
        out.append(f"{pad}{layer_name(pkt)}")
        for name, fld, val, named, _fixed in present_fields(pkt):
            out.extend(_field(pkt, fld, name, val, named, level + 1, depth))
        res = deciphered_of(pkt)
        if res is not None and getattr(res, "packet", None) is not None:
            verdict = {True: "tag OK", False: "tag FAILED", None: "tag not checked"}
            out.append(f"{pad}{INDENT}deciphered with {res.key_kind} key {res.key_name},"
                       f" {verdict[res.tag_verified]}:")
            out.extend(packet_lines(res.packet, level + 2, depth + 1))
        pkt, depth = pkt.payload, depth + 1
    return out


def _field(pkt: Packet, fld: Any, name: str, val: Any, named: bool, level: int,
           depth: int) -> list[str]:
    pad = INDENT * level
    if isinstance(val, Packet):
        return [f"{pad}{name}:", *packet_lines(val, level + 1, depth + 1)]
    if isinstance(val, list):
        if not val:
            return [f"{pad}{name}: (none)"]
        lines = [f"{pad}{name}: {len(val)} item(s)"]
        for i, item in enumerate(val):
            lines.extend(_field(pkt, fld, f"[{i}]", item, named, level + 1, depth))
        return lines
    return [f"{pad}{name}: {_value(pkt, fld, val, named)}"]


def _value(pkt: Packet, fld: Any, val: Any, named: bool) -> str:
    if isinstance(val, (bytes, bytearray)):
        return _bytes(bytes(val))
    if isinstance(val, bool) or val is None:
        return str(val)
    if isinstance(val, int):
        shown = fld.i2repr(pkt, val) if named else None
        if isinstance(shown, str) and shown not in (str(val), hex(val)):
            return shown if str(val) in shown else f"{shown} ({val})"
        return f"{val} (0x{val:x})" if val > 9 else str(val)
    return str(val)


def _bytes(data: bytes) -> str:
    shown = data[:MAX_HEX].hex(" ")
    more = " ..." if len(data) > MAX_HEX else ""
    return f"{shown}{more} ({len(data)} byte{'s' if len(data) != 1 else ''})" if data \
        else "(empty)"
