"""COSEM date-time (12 bytes), date (5) and time (4): text, Python values, `DateTimeField`.

Not-specified fields (0xFF; deviation 0x8000) read as "*" in the text and None in the values.
"""

from __future__ import annotations

import datetime as _dt
import struct
from typing import Any

from scapy.fields import Field
from scapy.packet import Packet

from .expert import add_finding

_MONTH_SPECIAL = {0xFD: "dst-end", 0xFE: "dst-begin", 0xFF: "*"}
_DAY_SPECIAL = {0xFD: "second-last", 0xFE: "last", 0xFF: "*"}


def _two(v: int) -> str:
    return "*" if v == 0xFF else f"{v:02d}"


def _date_text(year: int, month: int, day: int) -> str:
    y = "*" if year == 0xFFFF else f"{year:04d}"
    m = _MONTH_SPECIAL.get(month, f"{month:02d}")
    d = _DAY_SPECIAL.get(day, f"{day:02d}")
    return f"{y}-{m}-{d}"


def _time_text(hour: int, minute: int, second: int, hundredths: int) -> str:
    text = f"{_two(hour)}:{_two(minute)}:{_two(second)}"
    if hundredths != 0xFF:
        text += f".{hundredths:02d}"
    return text


def _plausible_date(b: bytes) -> bool:
    year = (b[0] << 8) | b[1]
    month, day, weekday = b[2], b[3], b[4]
    return ((year <= 9999 or year == 0xFFFF) and (1 <= month <= 12 or month >= 0xFD)
            and (1 <= day <= 31 or day >= 0xFD) and (1 <= weekday <= 7 or weekday == 0xFF))


def _plausible_time(b: bytes) -> bool:
    hour, minute, second, hundredths = b[0], b[1], b[2], b[3]
    return ((hour <= 23 or hour == 0xFF) and (minute <= 59 or minute == 0xFF)
            and (second <= 59 or second == 0xFF) and (hundredths <= 99 or hundredths == 0xFF))


def looks_like_date_time(b: bytes) -> bool:
    """True for 12 bytes that read as a COSEM date-time (how meters put clocks in octet strings)."""
    if len(b) != 12 or not (_plausible_date(b[:5]) and _plausible_time(b[5:9])):
        return False
    deviation = struct.unpack_from(">h", b, 9)[0]
    return -840 <= deviation <= 840 or deviation == -0x8000


def date_time_value(b: bytes) -> dict[str, Any]:
    """Readable form of a 12-byte date-time, 5-byte date or 4-byte time (see `data_value`)."""
    if len(b) == 12:
        deviation = struct.unpack_from(">h", b, 9)[0]
        return {
            "date_time": _date_text((b[0] << 8) | b[1], b[2], b[3]) + " "
                         + _time_text(b[5], b[6], b[7], b[8]),
            "weekday": None if b[4] == 0xFF else b[4],
            "deviation": None if deviation == -0x8000 else deviation,
            "clock_status": None if b[11] == 0xFF else b[11],
            "hex": b.hex(),
        }
    if len(b) == 5:
        return {"date": _date_text((b[0] << 8) | b[1], b[2], b[3]),
                "weekday": None if b[4] == 0xFF else b[4], "hex": b.hex()}
    if len(b) == 4:
        return {"time": _time_text(b[0], b[1], b[2], b[3]), "hex": b.hex()}
    return {"hex": b.hex()}


def encode_date_time(value: _dt.datetime | _dt.date | _dt.time, deviation: int | None = None,
                     clock_status: int | None = None) -> bytes:
    """COSEM encoding of a Python datetime (12 bytes), date (5) or time (4).

    `deviation` (minutes, as the meter sends it) and `clock_status` default to not-specified.
    """
    if isinstance(value, _dt.datetime):
        dev = -0x8000 if deviation is None else deviation
        return (encode_date_time(value.date()) + encode_date_time(value.time())
                + struct.pack(">hB", dev, 0xFF if clock_status is None else clock_status))
    if isinstance(value, _dt.date):
        return struct.pack(">HBBB", value.year, value.month, value.day, value.isoweekday())
    return bytes([value.hour, value.minute, value.second, value.microsecond // 10000])


def date_time_text(b: bytes) -> str:
    v = date_time_value(b)
    text = v.get("date_time") or v.get("date") or v.get("time") or b.hex()
    if v.get("deviation") is not None:
        text += f" dev={v['deviation']}"
    if v.get("clock_status") is not None:
        text += f" status=0x{v['clock_status']:02x}"
    return text


class DateTimeField(Field[bytes, bytes]):
    """A fixed-size COSEM date-time (12), date (5) or time (4), shown readable; kept as bytes.

    Builds from bytes or a Python `datetime`/`date`/`time` (deviation and status not specified).
    """

    __slots__ = ["size"]

    def __init__(self, name: str, default: Any, size: int) -> None:
        self.size = size
        super().__init__(name, None)
        self.default = self.any2i(None, default)

    def any2i(self, pkt: Packet | None, x: Any) -> bytes | None:
        if isinstance(x, _dt.date | _dt.time):
            return encode_date_time(x)
        return bytes(x) if isinstance(x, bytes | bytearray) else x

    def addfield(self, pkt: Packet, s: bytes, val: bytes | None) -> bytes:
        return s + (val if val is not None else b"\xff" * self.size)

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, bytes]:
        if len(s) < self.size:
            add_finding(pkt, "error", "malformed.truncated",
                        f"{self.name}: {self.size} bytes needed, {len(s)} present")
        return s[self.size:], s[:self.size]

    def i2len(self, pkt: Packet, x: Any) -> int:
        return self.size

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        if not isinstance(x, bytes):
            return repr(x)
        return date_time_text(x) if len(x) == self.size else x.hex()


__all__ = ["DateTimeField", "date_time_text", "date_time_value", "encode_date_time",
           "looks_like_date_time"]
