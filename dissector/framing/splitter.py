"""Cut byte streams into PDUs: HDLC frames (IEC 62056-46) and wrapper PDUs (IEC 62056-47).

HDLC frames are delimited by the 11-bit length of the format field, not by byte stuffing: a 7E
byte may appear inside a frame. Consecutive frames may share one flag (`7E..7E..7E`) or use one
flag each (`7E..7E 7E..7E`). The splitters are incremental (feed bytes as they arrive, get the
complete PDUs) and remember which capture frames carried the bytes of each PDU.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, cast

from layers.apdu.base import TAG_NAMES
from layers.crc import crc16

Transport = Literal["hdlc", "wrapper", "raw", "mbus"]
MBUS_LONG_START = 0x68
TRANSPORTS: tuple[str, ...] = ("hdlc", "wrapper", "raw", "mbus")

FLAG = 0x7E
WRAPPER_VERSION = b"\x00\x01"
WRAPPER_HEADER_LEN = 8
#: IEC 61334-4-32 LLC header that precedes an APDU on PLC links (first byte 90).
LLC_432_FIRST = 0x90
LLC_432_LEN = 3
HDLC_MIN_LEN = 7  # format(2) + dest(1) + src(1) + control(1) + FCS(2)
#: First bytes of APDUs (ACSE, xDLMS, ciphered), for the raw and resynchronisation heuristics.
APDU_TAGS = frozenset(TAG_NAMES)


@dataclass(slots=True)
class Piece:
    """One complete PDU cut from a stream, with the capture frames that carried its bytes."""

    data: bytes
    frames: list[int]
    time: float


@dataclass(slots=True)
class FramingNote:
    """Something the splitter had to work around: `count` bytes dropped while looking for
    the start of a PDU (noise, a partial or bad frame), or 0 for a PDU cut despite a defect."""

    count: int
    frames: list[int]
    time: float
    code: str
    message: str
    severity: Literal["warning", "note"] = "warning"


@dataclass(slots=True)
class _Marks:
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


class _Splitter(ABC):
    """Buffer, frame accounting and skipped-byte reporting shared by the splitters."""

    skip_code = "framing.skipped-bytes"
    unit = "PDU"

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self._marks = _Marks()
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

    def feed(self, data: bytes, frame_no: int = 0, time: float = 0.0) -> list[Piece | FramingNote]:
        """Add stream bytes carried by capture frame `frame_no`; return the PDUs now complete."""
        out: list[Piece | FramingNote] = []
        if data:
            self._buf += data
            self._marks.add(self._base + len(self._buf), frame_no, time)
            self._scan(out, final=False)
        return out

    def flush(self) -> list[Piece | FramingNote]:
        """End of stream: return what can still be cut and report what is left over."""
        out: list[Piece | FramingNote] = []
        self._scan(out, final=True)
        if self._buf:
            self._skip(0, len(self._buf), "incomplete PDU at end of stream")
            self._consume(len(self._buf))
        self._report_skip(out)
        return out

    def interrupt(self) -> list[Piece | FramingNote]:
        """The stream lost bytes here (a capture gap): end what is buffered as at the end of
        the stream, then look for the next PDU start as after noise."""
        out = self.flush()
        self._in_sync = False
        return out

    @abstractmethod
    def _scan(self, out: list[Piece | FramingNote], final: bool) -> None:
        """Cut what the buffer holds into `out`; `final` at the end of the stream."""

    def _emit(self, start: int, end: int, out: list[Piece | FramingNote]) -> None:
        self._report_skip(out)
        frames, time = self._marks.span(self._base + start, self._base + end)
        out.append(Piece(bytes(self._buf[start:end]), frames, time))
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

    def _report_skip(self, out: list[Piece | FramingNote]) -> None:
        if not self._skip_count:
            return
        reasons = ", ".join(sorted(self._skip_reasons))
        if self.pdus:
            where, severity = f"after {self.unit} {self.pdus}", "warning"
        else:
            where, severity = f"before the first {self.unit}", "note"
        out.append(FramingNote(self._skip_count, self._skip_frames, self._skip_time, self.skip_code,
                        f"skipped {self._skip_count} byte(s) {where} ({reasons})",
                        cast(Literal["warning", "note"], severity)))
        self._skip_count = 0
        self._skip_frames = []
        self._skip_reasons = set()

    def _consume(self, count: int) -> None:
        if count:
            del self._buf[:count]
            self._base += count
            self._marks.release(self._base)


def _address_len(buf: bytes | bytearray, pos: int, n: int, frame_end: int) -> int | None:
    """Length of the HDLC address starting at `pos` (1, 2 or 4); 0 if its bytes are not all in
    `buf[:n]` yet; None if malformed (3 bytes, no end bit in 4 bytes, or past `frame_end`)."""
    for i in range(4):
        if pos + i >= frame_end:
            return None
        if pos + i >= n:
            return 0
        if buf[pos + i] & 1:
            return None if i == 2 else i + 1
    return None


def _check_hdlc(buf: bytes | bytearray, p: int, n: int) -> tuple[str, int, bool | None, bool]:
    """Examine a candidate frame at `buf[p] == 7E` within `buf[:n]`.

    Returns (state, length, hcs_ok, fcs_ok) with state "frame" (complete, closing flag in
    place), "wait" (need more bytes; `hcs_ok` False when the header already fails), "noflag"
    (no flag where the length says the frame ends) or "bad".
    """
    if p + 3 > n:
        return "wait", 0, None, False
    length = (buf[p + 1] & 0x07) << 8 | buf[p + 2]
    if buf[p + 1] & 0xF0 != 0xA0 or length < HDLC_MIN_LEN:
        return "bad", length, None, False
    frame_end = p + 1 + length - 2  # addresses end before the FCS
    dest = _address_len(buf, p + 3, n, frame_end)
    if dest is None:
        return "bad", length, None, False
    src = _address_len(buf, p + 3 + dest, n, frame_end) if dest else 0
    if src is None:
        return "bad", length, None, False
    hcs_ok: bool | None = None
    if dest and src:
        header = 2 + dest + src + 1
        if length < header + 2 or length == header + 3:
            return "bad", length, None, False
        if length > header + 2 and p + 1 + header + 2 <= n:
            hcs = buf[p + 1 + header] | buf[p + 2 + header] << 8
            hcs_ok = crc16(buf[p + 1 : p + 1 + header]) == hcs
    if p + length + 2 > n:
        return "wait", length, hcs_ok, False
    if buf[p + 1 + length] != FLAG:
        return "noflag", length, hcs_ok, False
    fcs = buf[p + length - 1] | buf[p + length] << 8
    return "frame", length, hcs_ok, crc16(buf[p + 1 : p + length - 1]) == fcs


def _flag_with_fcs(buf: bytes | bytearray, p: int, n: int) -> int | None:
    """Position of the first flag after `p` that ends a frame with a valid FCS (for a frame
    whose length field is wrong), or None."""
    q = buf.find(FLAG, p + HDLC_MIN_LEN + 1, min(n, p + 2 + 0x7FF))
    while q >= 0:
        if crc16(buf[p + 1 : q - 2]) == buf[q - 2] | buf[q - 1] << 8:
            return q
        q = buf.find(FLAG, q + 1, min(n, p + 2 + 0x7FF))
    return None


class HdlcSplitter(_Splitter):
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

    def __init__(self) -> None:
        super().__init__()
        self._closing_flag = -1  # stream offset of the closing flag of the last frame

    def _scan(self, out: list[Piece | FramingNote], final: bool) -> None:
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
            state, length, hcs_ok, fcs_ok = _check_hdlc(buf, p, n)
            if state == "wait" and not final and (hcs_ok is not False or self._in_sync):
                break
            if state == "frame" and (fcs_ok or hcs_ok or self._in_sync):
                self._emit(p, p + length + 2, out)
                self._closing_flag = self._base + p + 1 + length
                p += 1 + length
                continue
            if self._in_sync and (state == "noflag" or (state == "wait" and final)):
                q = _flag_with_fcs(buf, p, n)
                if q is not None:
                    self._emit(p, q + 1, out)
                    frames, time = self._marks.span(self._base + p, self._base + q + 1)
                    out.append(FramingNote(0, frames, time, "hdlc.bad-length",
                                           f"frame {self.pdus} of this stream ends at a flag "
                                           f"with a valid FCS after {q - p - 1} bytes; its "
                                           f"length field says {length}"))
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


class WrapperSplitter(_Splitter):
    """Incremental IEC 62056-47 wrapper splitter: version 0001, wPorts, length, APDU.

    In sync every header is taken as it is; after garbage a header is taken only when it
    looks right (version 1, wPorts up to 3FFF, non-zero length, first APDU byte a known tag).
    """

    skip_code = "wrapper.skipped-bytes"
    unit = "wrapper PDU"

    def _scan(self, out: list[Piece | FramingNote], final: bool) -> None:
        buf = self._buf
        n = len(buf)
        p = 0
        while n - p >= WRAPPER_HEADER_LEN:
            length = buf[p + 6] << 8 | buf[p + 7]
            if buf[p] == 0 and buf[p + 1] == 1:
                if self._in_sync or _plausible_wrapper(buf, p, n):
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


def _plausible_wrapper(buf: bytes | bytearray, p: int, n: int) -> bool:
    """A wrapper header at `p` when out of sync: wPorts within the SAP / logical device range
    (0..3FFF), a non-zero length and a known first APDU byte."""
    length = buf[p + 6] << 8 | buf[p + 7]
    return (
        length > 0
        and buf[p + 2] < 0x40
        and buf[p + 4] < 0x40
        and p + WRAPPER_HEADER_LEN < n
        and buf[p + WRAPPER_HEADER_LEN] in APDU_TAGS
    )


def detect_transport(first_bytes: bytes) -> Transport | None:
    """Guess the framing of a stream or datagram from its first bytes.

    "hdlc": 7E, a format byte of type A, sane addresses, and a valid HCS (or FCS) as far as the
    bytes go; "wrapper": version 0001, plausible wPorts, length and first APDU byte; "raw": the
    first byte is a known APDU tag (or an IEC 61334-4-32 LLC header in front of one); None
    otherwise. "raw" is only trustworthy on a known DLMS port.
    """
    data = first_bytes
    if not data:
        return None
    if data[0] == FLAG:
        p = 0
        while p + 1 < len(data) and data[p + 1] == FLAG:
            p += 1
        state, _length, hcs_ok, fcs_ok = _check_hdlc(data, p, len(data))
        if state == "frame" and (fcs_ok or hcs_ok):
            return "hdlc"
        if state == "wait" and hcs_ok is not False and len(data) > p + 1:
            return "hdlc"
        return None
    if data[:2] == WRAPPER_VERSION:
        if len(data) < WRAPPER_HEADER_LEN:
            return "wrapper"
        if not _plausible_wrapper(data, 0, len(data)):
            return None
        end = WRAPPER_HEADER_LEN + (data[6] << 8 | data[7])
        if len(data) > end and data[end : end + 2] != WRAPPER_VERSION[: len(data) - end]:
            return None
        return "wrapper"
    if data[0] in APDU_TAGS:
        return "raw"
    if data[0] == LLC_432_FIRST and len(data) > LLC_432_LEN and data[LLC_432_LEN] in APDU_TAGS:
        return "raw"
    return None


def strip_llc_432(apdu: bytes) -> bytes:
    """A raw APDU without its IEC 61334-4-32 LLC header (90 xx xx), when it has one."""
    if len(apdu) > LLC_432_LEN and apdu[0] == LLC_432_FIRST and apdu[LLC_432_LEN] in APDU_TAGS:
        return apdu[LLC_432_LEN:]
    return apdu


def find_start(data: bytes) -> tuple[int, Transport] | None:
    """First offset at which a complete, check-valid HDLC frame or a plausible wrapper header
    starts (for streams captured mid-PDU); None if there is none."""
    n = len(data)
    p = 0
    while p < n:
        b = data[p]
        if b == FLAG:
            state, _length, hcs_ok, fcs_ok = _check_hdlc(data, p, n)
            if state == "frame" and (fcs_ok or hcs_ok):
                return p, "hdlc"
        elif b == 0 and p + WRAPPER_HEADER_LEN < n and data[p + 1] == 1 and _plausible_wrapper(
            data, p, n
        ):
            end = p + WRAPPER_HEADER_LEN + (data[p + 6] << 8 | data[p + 7])
            if end == n or (end + 1 < n and data[end : end + 2] == WRAPPER_VERSION):
                return p, "wrapper"
        p += 1
    return None


def _start_at(data: bytes | bytearray, p: int, n: int) -> tuple[str, int]:
    """What `find_start` decides at offset `p` of `data[:n]`: ("hdlc" | "wrapper", 0) when a
    PDU starts there, ("no", 0) when none can, ("wait", m) when it depends on bytes not yet
    there (nothing can change before `m` bytes are present)."""
    b = data[p]
    if b == MBUS_LONG_START:
        from layers.mbus import frame_length

        length = frame_length(bytes(data[p:n]), 0, strict=True)
        if length is None:
            return "no", 0
        return ("mbus", 0) if length else ("wait", p + (data[p + 1] + 6 if n > p + 1 else 4))
    if b == FLAG:
        state, length, hcs_ok, fcs_ok = _check_hdlc(data, p, n)
        if state == "frame":
            return ("hdlc", 0) if fcs_ok or hcs_ok else ("no", 0)
        if state == "wait":
            return "wait", (p + length + 2 if p + 3 <= n else p + 3)
        return "no", 0
    if b != 0:
        return "no", 0
    if p + 1 >= n:
        return "wait", p + 2
    if data[p + 1] != 1:
        return "no", 0
    if p + WRAPPER_HEADER_LEN >= n:
        return "wait", p + WRAPPER_HEADER_LEN + 1
    if not _plausible_wrapper(data, p, n):
        return "no", 0
    end = p + WRAPPER_HEADER_LEN + (data[p + 6] << 8 | data[p + 7])
    if end == n or (end + 1 < n and data[end : end + 2] == WRAPPER_VERSION):
        return "wrapper", 0
    if end + 1 < n:
        return "no", 0
    # the PDU ends at or just before the end of the bytes: a later record decides
    return "wait", (end if n < end else end + 2)


class StartFinder:
    """`find_start` over a growing stream, in time linear in its length.

    `feed(data)` appends bytes and returns what `find_start` would return for every byte fed
    since the last `drop` (offsets count from the first byte ever fed), without scanning a byte
    twice: offsets that cannot start a PDU are ruled out once; those that wait for more bytes
    are looked at again only when enough bytes are there to decide.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self._scanned = 0  # stream offset of the first byte not looked at yet
        self._waiting: list[tuple[int, int]] = []  # heap of (bytes needed, stream offset)

    @property
    def held(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> tuple[int, Transport] | None:
        import heapq

        self._buf += data
        buf, base = self._buf, self._base
        n = len(buf)
        end = base + n
        found: list[tuple[int, Transport]] = []
        ready = []
        while self._waiting and self._waiting[0][0] <= end:
            offset = heapq.heappop(self._waiting)[1]
            if offset >= base:
                ready.append(offset)
        for offset in sorted(ready):
            kind, need = _start_at(buf, offset - base, n)
            if kind == "wait":
                heapq.heappush(self._waiting, (base + need, offset))
            elif kind != "no":
                found.append((offset, cast(Transport, kind)))
                break
        # a start below the scan frontier wins; otherwise scan the new bytes
        p = self._scanned - base
        while p < n and not (found and found[0][0] < base + p):
            b = buf[p]
            if b == FLAG or b == 0 or b == MBUS_LONG_START:
                kind, need = _start_at(buf, p, n)
                if kind == "wait":
                    heapq.heappush(self._waiting, (base + need, base + p))
                elif kind != "no":
                    found.append((base + p, cast(Transport, kind)))
                    break
                p += 1
            else:
                q = _next_candidate(buf, p + 1)
                p = n if q < 0 else q
        self._scanned = base + min(p, n)
        if not found:
            return None
        return min(found)

    def drop(self, offset: int) -> None:
        """Forget the bytes before stream offset `offset` (no PDU can start there any more)."""
        cut = min(offset - self._base, len(self._buf))
        if cut <= 0:
            return
        del self._buf[:cut]
        self._base += cut
        self._scanned = max(self._scanned, self._base)
        # offsets now below the base leave the heap when their turn comes (see feed): each
        # waits at most one PDU's length, so the heap stays as small as the bytes held


def _next_candidate(buf: bytes | bytearray, p: int) -> int:
    """Offset of the next byte that may start a PDU (7E HDLC, 00 wrapper, 68 M-Bus long frame)
    at or after `p`, or -1."""
    found = [i for i in (buf.find(FLAG, p), buf.find(0, p), buf.find(MBUS_LONG_START, p))
             if i >= 0]
    return min(found) if found else -1


def split_hdlc_frames(data: bytes) -> list[bytes]:
    """The complete HDLC frames (flag to flag) in `data`, e.g. a pasted hex line holding
    several frames; bytes between frames are dropped. Empty if no frame is found."""
    splitter = HdlcSplitter()
    pieces = splitter.feed(data) + splitter.flush()
    return [piece.data for piece in pieces if isinstance(piece, Piece)]


def new_splitter(transport: str) -> _Splitter:
    """A splitter for "hdlc", "wrapper" or "mbus"."""
    if transport == "hdlc":
        return HdlcSplitter()
    if transport == "wrapper":
        return WrapperSplitter()
    if transport == "mbus":
        from dissector.framing.linklayers import MbusSplitter

        return MbusSplitter()
    raise ValueError(f"no splitter for transport {transport!r}")


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
