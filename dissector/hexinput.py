"""Hex pasted from traces: tolerant parsing and splitting into transport units."""

from __future__ import annotations

import re

from .pipeline import Unit

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


def units_from_line(data: bytes, line_no: int) -> list[Unit]:
    """Split one input line: HDLC frames at their flags, a wrapper PDU, or a bare APDU."""
    if data[:1] == b"\x7e":
        from layers.expert import Finding

        from .framing import split_hdlc_frames

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
