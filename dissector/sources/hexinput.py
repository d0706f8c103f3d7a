"""Hex pasted from traces: tolerant parsing into bytes, one line at a time (cut into PDUs by
`dissector.framing.lines`)."""

from __future__ import annotations

import re

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
