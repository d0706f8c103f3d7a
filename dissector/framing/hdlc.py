"""HDLC framing: the incremental frame splitter and the frames of a pasted line.

HDLC frames are delimited by the 11-bit length of the format field, not by byte stuffing: a 7E
byte may appear inside a frame. Consecutive frames may share one flag (`7E..7E..7E`) or use one
flag each (`7E..7E 7E..7E`). The frame bytes are read by `layers.hdlc_bytes`.
"""

from __future__ import annotations

from dissector.framing.splitter import Splitter
from dissector.stages import Pdu
from layers.expert import Finding
from layers.hdlc_bytes import FLAG, check_frame, flag_with_fcs


class HdlcSplitter(Splitter):
    """Incremental HDLC frame splitter.

    A frame starts at a 7E flag followed by a format byte A0..AF, lasts as long as the 11-bit
    length says and must end with a 7E flag. In sync (at the start of the stream or right after
    a frame) a frame of the right shape is taken even with a bad FCS (the HDLC layer reports
    it), and a frame whose length field is wrong is taken up to the first flag that closes it
    with a valid FCS (noted as `hdlc.bad-length`); while resynchronising after noise a frame
    must also pass its HCS or FCS. Emitted pieces run from the opening to the closing flag
    inclusive.
    """

    skip_code = "hdlc.skipped-bytes"
    unit = "frame"
    transport = "hdlc"

    def __init__(self) -> None:
        super().__init__()
        self._closing_flag = -1  # stream offset of the closing flag of the last frame

    def _scan(self, out: list[Pdu | Finding], final: bool) -> None:
        buf = self._buf
        n = len(buf)
        p = 0
        while p < n:
            if buf[p] != FLAG:
                q = buf.find(FLAG, p)
                q = n if q < 0 else q
                self._skip(p, q, "noise")
                p = q
                continue
            if p + 1 >= n:
                if final:
                    self._skip_flag(p)
                    p = n
                break
            if buf[p + 1] == FLAG:
                self._skip_flag(p)
                p += 1
                continue
            check = check_frame(buf, p, n)
            state, length, hcs_ok = check.state, check.length, check.hcs_ok
            if state == "wait" and not final and (hcs_ok is not False or self._in_sync):
                break
            if state == "frame" and (check.checks or self._in_sync):
                self._emit(p, p + length + 2, out)
                self._closing_flag = self._base + p + 1 + length
                p += 1 + length
                continue
            if self._in_sync and (state == "noflag" or (state == "wait" and final)):
                q = flag_with_fcs(buf, p, n)
                if q is not None:
                    self._emit(p, q + 1, out)
                    frames, time = self._marks.span(self._base + p, self._base + q + 1)
                    out.append(Finding("warning", "hdlc.bad-length",
                                       f"frame {self.pdus} of this stream ends at a flag with a"
                                       f" valid FCS after {q - p - 1} bytes; its length field"
                                       f" says {length}", frames[0] if frames else 0, time))
                    self._closing_flag = self._base + q
                    p = q
                    continue
            if state == "frame" or hcs_ok is False:
                reason = "frame-shaped bytes with bad HCS/FCS"
            elif state == "wait":
                reason = "partial frame"
            else:
                reason = "noise"
            self._skip_flag(p, reason)
            p += 1
        self._consume(p)

    def _skip_flag(self, p: int, reason: str = "noise") -> None:
        """Drop the flag at `p`: silently if it closed the previous frame or fills between
        frames, else as skipped bytes."""
        if self._base + p == self._closing_flag or (
            self._in_sync and reason == "noise" and p + 1 < len(self._buf)
            and self._buf[p + 1] == FLAG
        ):
            return
        self._skip(p, p + 1, reason)


def split_hdlc_frames(data: bytes) -> list[bytes]:
    """The complete HDLC frames (flag to flag) in `data`, e.g. a pasted hex line holding
    several frames; bytes between frames are dropped. Empty if no frame is found."""
    splitter = HdlcSplitter()
    pieces = splitter.feed(data) + splitter.flush()
    return [piece.data for piece in pieces if isinstance(piece, Pdu)]
