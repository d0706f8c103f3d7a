"""A-XDR type tags and untagged basic values: their JSON-serialisable Python values and the
fields that show them (see `layers.axdr.data_value` for the value forms)."""

from __future__ import annotations

import math
import struct
from typing import Any

from scapy.packet import Packet

from .axdr_datetime import date_time_text, date_time_value, looks_like_date_time
from .fields import OctetsField
from .obis import obis_name, obis_str

#: A-XDR Data type tag -> Green Book name.
DATA_TYPES: dict[int, str] = {
    0: "null-data", 1: "array", 2: "structure", 3: "boolean", 4: "bit-string",
    5: "double-long", 6: "double-long-unsigned", 9: "octet-string", 10: "visible-string",
    12: "utf8-string", 13: "bcd", 15: "integer", 16: "long", 17: "unsigned",
    18: "long-unsigned", 19: "compact-array", 20: "long64", 21: "long64-unsigned", 22: "enum",
    23: "float32", 24: "float64", 25: "date-time", 26: "date", 27: "time", 255: "dont-care",
}
TAG_OF_NAME = {name: tag for tag, name in DATA_TYPES.items()}

#: Deepest array/structure (and compact-array type description) nesting that is decoded.
MAX_DEPTH = 64
#: Untagged value struct formats.
_STRUCT = {5: ">i", 6: ">I", 13: ">b", 15: ">b", 16: ">h", 17: "B", 18: ">H", 20: ">q", 21: ">Q",
           22: "B", 23: ">f", 24: ">d"}


def basic_value(tag: int, b: bytes, nbits: int) -> Any:
    """Python value of an untagged basic value `b` (`nbits` is the bit-string length)."""
    fmt = _STRUCT.get(tag)
    if fmt is not None:
        return number_value(struct.unpack(fmt, b)[0])
    if tag == 3:
        return b[0] != 0
    if tag in (9, 10, 12):
        return string_value(tag, b)
    if tag == 4:
        return bit_text(b, nbits)
    if tag in (25, 26, 27):
        return date_time_value(b)
    return None


def number_value(v: int | float) -> int | float | str:
    """The number, or its text ("nan", "inf", "-inf") when it is not finite."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def bit_text(b: bytes, nbits: int) -> str:
    """The first `nbits` bits of `b` as "0"/"1" text."""
    return "".join(f"{x:08b}" for x in b)[:nbits]


def string_value(tag: int, b: bytes) -> Any:
    """Octet-string (hex, or a date-time), visible-string or utf8-string bytes as a value."""
    if tag == 9:
        return date_time_value(b) if looks_like_date_time(b) else b.hex()
    if tag == 12:
        return b.decode("utf-8", errors="replace")
    try:
        return b.decode("ascii")
    except UnicodeDecodeError:
        return b.decode("latin-1")


class BitsField(OctetsField):
    """Bit-string bytes, shown as the packet's `length` bits."""

    def i2repr(self, pkt: Packet, x: bytes) -> str:
        if not isinstance(x, bytes):
            return repr(x)
        return bit_text(x, pkt.length if isinstance(pkt.length, int) else len(x) * 8)


class OctetStringValueField(OctetsField):
    """Octet-string bytes; a date-time or an OBIS-looking value is shown decoded too."""

    def i2repr(self, pkt: Packet, x: bytes) -> str:
        if not isinstance(x, bytes):
            return repr(x)
        if looks_like_date_time(x):
            return f"{x.hex()} ({date_time_text(x)})"
        if len(x) == 6:
            name = obis_name(x)
            return f"{x.hex()} ({obis_str(x)}{', ' + name if name else ''})"
        return x.hex()


class TextValueField(OctetsField):
    """Visible-string or utf8-string bytes, shown as text."""

    def i2repr(self, pkt: Packet, x: bytes) -> str:
        return repr(string_value(pkt.type_tag, x)) if isinstance(x, bytes) else repr(x)


__all__ = ["DATA_TYPES", "MAX_DEPTH", "TAG_OF_NAME", "BitsField", "OctetStringValueField",
           "TextValueField", "basic_value", "bit_text", "number_value", "string_value"]
