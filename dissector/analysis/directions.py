"""Directions of HDLC frames on links whose source does not tell them (a half-duplex serial
line, pasted frames), by the project's one rule: what the frame says of itself (its kind, its
LLC: `layers.hdlc_bytes.header_direction`), else what the same address pair did before, else
the address sizes (`layers.hdlc_bytes.address_direction`)."""

from __future__ import annotations

from dissector.stages import UNKNOWN, Direction, reverse
from layers.hdlc_bytes import address_direction, header_direction, parse_header

MAX_LEARNED = 4096  # address pairs remembered over all links


class DirectionLearner:
    """The one direction rule plus what it learned per (link, address pair)."""

    __slots__ = ("learned",)

    def __init__(self) -> None:
        self.learned: dict[tuple[str, bytes, bytes], Direction] = {}

    def direction(self, link: str, frame: bytes) -> Direction:
        """Which way `frame` (flag to flag) travels on `link`."""
        header = parse_header(frame)
        if header is None:
            return UNKNOWN
        dest, src = header.destination, header.source
        said = header_direction(header, frame)
        if said is None and dest != src:
            said = self.learned.get((link, dest, src)) or address_direction(header)
        found = reverse(reverse(said or UNKNOWN))
        if dest == src or found == UNKNOWN:
            return found
        if len(self.learned) >= MAX_LEARNED and (link, dest, src) not in self.learned:
            self.learned.clear()  # a flood of addresses: start over rather than grow
        self.learned[(link, dest, src)] = found
        self.learned[(link, src, dest)] = reverse(found)
        return found

    def forget(self, link: str) -> None:
        """The link closed."""
        for key in [k for k in self.learned if k[0] == link]:
            del self.learned[key]
