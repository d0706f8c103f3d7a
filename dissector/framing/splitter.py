"""Incremental splitting of byte streams into PDUs: the machinery every splitter shares (buffer,
capture-frame accounting, skipped-byte findings), the IEC 62056-47 wrapper splitter, and the
`--port` transport overrides.

The splitters are incremental: feed bytes as they arrive, get the complete PDUs, each with the
capture frames that carried its bytes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import cast

from dissector.sources.detect import WRAPPER_HEADER_LEN, WRAPPER_VERSION, plausible_wrapper
from dissector.stages import Pdu, Transport
from layers.expert import Finding, Severity

TRANSPORTS: tuple[str, ...] = ("hdlc", "wrapper", "raw", "mbus")


@dataclass(slots=True)
class Marks:
    """Which capture frame carried which stream offsets (end offset, frame number, time)."""

    marks: deque[tuple[int, int, float]] = field(default_factory=deque)

    def add(self, end: int, frame_no: int, time: float) -> None:
        self.marks.append((end, frame_no, time))

    def span(self, start: int, end: int) -> tuple[list[int], float]:
        """Frames overlapping the stream offsets [start, end), in capture order, and the time
        of the last one (TCP may deliver an earlier-captured segment later)."""
        frames: list[int] = []
        time = 0.0
        mark_start = -1
        for mark_end, frame_no, mark_time in self.marks:
            if mark_start >= end:
                break
            if mark_end > start and (not frames or frames[-1] != frame_no):
                frames.append(frame_no)
                time = max(time, mark_time)
            mark_start = mark_end
        if len(frames) > 1:
            frames = sorted(set(frames))
        return frames, time

    def release(self, base: int) -> None:
        """Forget the marks of bytes before stream offset `base`."""
        marks = self.marks
        while marks and marks[0][0] <= base:
            marks.popleft()


class Splitter(ABC):
    """Buffer, frame accounting and skipped-byte reporting shared by the splitters."""

    skip_code = "framing.skipped-bytes"
    unit = "PDU"
    transport: Transport = "raw"

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self._marks = Marks()
        self._in_sync = True
        self._skip_count = 0
        self._skip_frames: list[int] = []
        self._skip_time = 0.0
        self._skip_reasons: set[str] = set()
        self.pdus = 0

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a PDU."""
        return len(self._buf)

    def feed(self, data: bytes, frame_no: int = 0, time: float = 0.0) -> list[Pdu | Finding]:
        """Add stream bytes carried by capture frame `frame_no`; return the PDUs now complete."""
        out: list[Pdu | Finding] = []
        if data:
            self._buf += data
            self._marks.add(self._base + len(self._buf), frame_no, time)
            self._scan(out, final=False)
        return out

    def flush(self) -> list[Pdu | Finding]:
        """End of stream: return what can still be cut and report what is left over."""
        out: list[Pdu | Finding] = []
        self._scan(out, final=True)
        if self._buf:
            self._skip(0, len(self._buf), "incomplete PDU at end of stream")
            self._consume(len(self._buf))
        self._report_skip(out)
        return out

    def rest(self) -> list[Pdu | Finding]:
        """The bytes held for a PDU not complete yet, as a PDU of their own (pasted input:
        a line is whole, so a frame it cuts short is shown, with what its layer finds)."""
        out = self.skipped()
        if self._buf:
            frames, time = self._marks.span(self._base, self._base + len(self._buf))
            out.append(Pdu(bytes(self._buf), self.transport, frames, time))
            self._consume(len(self._buf))
        return out

    def interrupt(self) -> list[Pdu | Finding]:
        """The stream lost bytes here (a capture gap): end what is buffered as at the end of
        the stream, then look for the next PDU start as after noise."""
        out = self.flush()
        self._in_sync = False
        return out

    @abstractmethod
    def _scan(self, out: list[Pdu | Finding], final: bool) -> None:
        """Cut what the buffer holds into `out`; `final` at the end of the stream."""

    def _emit(self, start: int, end: int, out: list[Pdu | Finding]) -> None:
        self._report_skip(out)
        frames, time = self._marks.span(self._base + start, self._base + end)
        out.append(Pdu(bytes(self._buf[start:end]), self.transport, frames, time))
        self._in_sync = True
        self.pdus += 1

    def _skip(self, start: int, end: int, reason: str) -> None:
        if end <= start:
            return
        frames, time = self._marks.span(self._base + start, self._base + end)
        for frame_no in frames:
            if frame_no not in self._skip_frames:
                self._skip_frames.append(frame_no)
        self._skip_time = time
        self._skip_count += end - start
        self._skip_reasons.add(reason)
        self._in_sync = False

    def skipped(self) -> list[Pdu | Finding]:
        """The finding about bytes skipped so far and not reported yet (it is otherwise
        given with the next PDU): for a stream that something else interrupts."""
        out: list[Pdu | Finding] = []
        self._report_skip(out)
        return out

    def _report_skip(self, out: list[Pdu | Finding]) -> None:
        if not self._skip_count:
            return
        reasons = ", ".join(sorted(self._skip_reasons))
        if self.pdus:
            where, severity = f"after {self.unit} {self.pdus}", "warning"
        else:
            where, severity = f"before the first {self.unit}", "note"
        out.append(Finding(cast(Severity, severity), self.skip_code,
                           f"skipped {self._skip_count} byte(s) {where} ({reasons})",
                           self._skip_frames[0] if self._skip_frames else 0, self._skip_time))
        self._skip_count = 0
        self._skip_frames = []
        self._skip_reasons = set()

    def _consume(self, count: int) -> None:
        if count:
            del self._buf[:count]
            self._base += count
            self._marks.release(self._base)


class WrapperSplitter(Splitter):
    """Incremental IEC 62056-47 wrapper splitter: version 0001, wPorts, length, APDU.

    In sync every header is taken as it is; after garbage a header is taken only when it
    looks right (version 1, wPorts up to 3FFF, non-zero length, first APDU byte a known tag).
    """

    skip_code = "wrapper.skipped-bytes"
    unit = "wrapper PDU"
    transport = "wrapper"

    def _scan(self, out: list[Pdu | Finding], final: bool) -> None:
        buf = self._buf
        n = len(buf)
        p = 0
        while n - p >= WRAPPER_HEADER_LEN:
            length = buf[p + 6] << 8 | buf[p + 7]
            if buf[p] == 0 and buf[p + 1] == 1:
                if self._in_sync or plausible_wrapper(buf, p, n):
                    end = p + WRAPPER_HEADER_LEN + length
                    if end > n:
                        if not final:
                            break
                        self._skip(p, n, "incomplete PDU at end of stream")
                        p = n
                        break
                    self._emit(p, end, out)
                    p = end
                    continue
                if n - p == WRAPPER_HEADER_LEN and not final:
                    break  # cannot judge the APDU tag yet
            q = buf.find(WRAPPER_VERSION, p + 1)
            q = n - 1 if q < 0 else q
            self._skip(p, q, "not a wrapper header")
            p = q
        if final and p < n:
            self._skip(p, n, "incomplete PDU at end of stream")
            p = n
        self._consume(p)


def parse_port_spec(spec: str) -> tuple[int, Transport]:
    """Parse a `--port` override such as "4059:wrapper" or "4061:hdlc" into (port, transport)."""
    port_text, sep, transport = spec.partition(":")
    transport = transport.strip().lower()
    if not sep or transport not in TRANSPORTS:
        raise ValueError(f"bad port spec {spec!r}: expected PORT:{'|'.join(TRANSPORTS)}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"bad port spec {spec!r}: {port_text!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ValueError(f"bad port spec {spec!r}: port out of range 1-65535")
    return port, cast(Transport, transport)
