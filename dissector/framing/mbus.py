"""Wired M-Bus (EN 13757-2) framing: the incremental frame splitter (ACK E5, short and long
frames). The DLMS segments the long frames carry are joined by the analysis."""

from __future__ import annotations

from dissector.framing.splitter import Splitter
from dissector.stages import Pdu
from layers.expert import Finding
from layers.mbus import ACK, LONG_START, SHORT_START, frame_length


def looks_like_mbus(data: bytes) -> bool:
    """Whether the bytes start with an M-Bus frame: a complete short or long frame with valid
    check sum and stop byte, an ACK (E5) alone or in front of a frame, or the distinctive
    long-frame header ``68 L L 68`` of a frame cut short."""
    if not data:
        return False
    if data[0] == ACK:
        return len(data) == 1 or looks_like_mbus(data[1:])
    if data[0] not in (SHORT_START, LONG_START):
        return False
    n = frame_length(data)
    if n:
        return True
    return (n == 0 and data[0] == LONG_START and len(data) >= 4 and data[1] == data[2]
            and data[3] == LONG_START)


class MbusSplitter(Splitter):
    """Incremental M-Bus frame splitter (ACK E5, short and long frames).

    In sync (at the start or right after a frame) a frame of the right shape is taken even with
    a bad check sum (the layer reports it); after noise a frame needs a valid check sum and a
    lone E5 is taken as noise.
    """

    skip_code = "mbus.skipped-bytes"
    unit = "M-Bus frame"
    transport = "mbus"

    def _scan(self, out: list[Pdu | Finding], final: bool) -> None:
        buf = self._buf
        n = len(buf)
        p = 0
        while p < n:
            b = buf[p]
            if b not in (SHORT_START, LONG_START) and not (b == ACK and self._in_sync):
                q = min((i for i in (buf.find(SHORT_START, p + 1), buf.find(LONG_START, p + 1))
                         if i >= 0), default=n)
                self._skip(p, q, "noise")
                p = q
                continue
            length = frame_length(buf, p, strict=not self._in_sync, final=final)
            if length == 0 and not final:
                break
            if not length:
                self._skip(p, p + 1, "partial frame" if length == 0 else "noise")
                p += 1
                continue
            self._emit(p, p + length, out)
            p += length
        self._consume(p)
