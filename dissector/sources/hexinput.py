"""Hex pasted from traces: tolerant parsing and splitting into transport units."""

from __future__ import annotations

import re
from collections.abc import Iterator

from dissector.analysis.pipeline import Dissector, Unit
from dissector.analysis.record import ApduRecord

_JUNK = re.compile(r"0x|[\s:,;.\-]", re.IGNORECASE)


class HexError(ValueError):
    """Input that is not hex."""


def parse_hex(text: str) -> bytes:
    """Bytes of a hex string; spaces, colons, commas and `0x` prefixes are tolerated."""
    clean = _JUNK.sub("", text)
    if len(clean) % 2:
        raise HexError(f"odd number of hex digits in {text.strip()[:40]!r}")
    try:
        return bytes.fromhex(clean)
    except ValueError as exc:
        bad = next((c for c in clean if c not in "0123456789abcdefABCDEF"), "?")
        raise HexError(f"not hex: {bad!r} in {text.strip()[:40]!r}") from exc


class HexInput:
    """Pasted lines in order: HDLC, wrapper, M-Bus (segments joined across lines), IEC 61334-4-32
    LLC, IEC 62056-21 sign-on messages, or bare APDUs. Link messages without an APDU come out
    as records through the dissector."""

    def __init__(self, dissector: Dissector) -> None:
        from dissector.framing.linklayers import MbusFramer, ModeEFramer

        self.dis = dissector
        self.mbus = MbusFramer("input")
        self.mode_e = ModeEFramer("input")

    def line(self, data: bytes, line_no: int) -> Iterator[ApduRecord]:
        from dissector.framing.linklayers import (
            llc432_unit,
            looks_like_llc432,
            looks_like_mbus,
            looks_like_mode_e,
        )

        if data[:1] != b"\x7e" and looks_like_mode_e(data):
            yield from self.dis.events(self.mode_e.feed(data, line_no))
        elif data[:1] != b"\x7e" and looks_like_mbus(data):
            yield from self.dis.events(self.mbus.feed(data, line_no))
        elif looks_like_llc432(data):
            yield from self.dis.feed(llc432_unit(data, line_no))
        else:
            for unit in units_from_line(data, line_no):
                yield from self.dis.feed(unit)

    def finish(self) -> Iterator[ApduRecord]:
        yield from self.dis.events(self.mbus.flush() + self.mode_e.flush())


def units_from_line(data: bytes, line_no: int) -> list[Unit]:
    """Split one input line: HDLC frames at their flags, a wrapper PDU, or a bare APDU."""
    if data[:1] == b"\x7e":
        from dissector.framing.splitter import split_hdlc_frames
        from layers.expert import Finding

        frames = split_hdlc_frames(data) or [data]
        units = [Unit(f, "hdlc", [line_no]) for f in frames]
        left = len(data) - sum(len(f) for f in frames)
        if left > 0:
            units[-1].findings.append(Finding(
                "warning", "hdlc.skipped-bytes",
                f"line {line_no}: {left} byte(s) outside any complete HDLC frame were skipped"))
        return units
    if data[:2] == b"\x00\x01" and len(data) >= 8:
        return [Unit(data, "wrapper", [line_no])]
    return [Unit(data, "raw", [line_no])]
