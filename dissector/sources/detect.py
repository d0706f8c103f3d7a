"""Which bytes are DLMS, in which framing: a guess from the first bytes of a flow or datagram,
the first offset where a PDU starts in a stream captured mid-PDU (in time linear in the
stream), and the wrapper header and IEC 61334-4-32 LLC checks both rely on."""

from __future__ import annotations

from typing import cast

from dissector.stages import Transport
from layers.apdu.base import TAG_NAMES
from layers.hdlc_bytes import FLAG, check_frame
from layers.mbus import LONG_START as MBUS_LONG_START

WRAPPER_VERSION = b"\x00\x01"
WRAPPER_HEADER_LEN = 8
#: IEC 61334-4-32 LLC header that precedes an APDU on PLC links (first byte 90).
LLC_432_FIRST = 0x90
LLC_432_LEN = 3
#: First bytes of APDUs (ACSE, xDLMS, ciphered), for the raw and resynchronisation heuristics.
APDU_TAGS = frozenset(TAG_NAMES)


def plausible_wrapper(buf: bytes | bytearray, p: int, n: int) -> bool:
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


def strip_llc_432(apdu: bytes) -> bytes:
    """A raw APDU without its IEC 61334-4-32 LLC header (90 xx xx), when it has one."""
    if len(apdu) > LLC_432_LEN and apdu[0] == LLC_432_FIRST and apdu[LLC_432_LEN] in APDU_TAGS:
        return apdu[LLC_432_LEN:]
    return apdu


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
        check = check_frame(data, p)
        if check.state == "frame" and check.checks:
            return "hdlc"
        if check.state == "wait" and check.hcs_ok is not False and len(data) > p + 1:
            return "hdlc"
        return None
    if data[:2] == WRAPPER_VERSION:
        if len(data) < WRAPPER_HEADER_LEN:
            return "wrapper"
        if not plausible_wrapper(data, 0, len(data)):
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


def find_start(data: bytes) -> tuple[int, Transport] | None:
    """First offset at which a complete, check-valid HDLC frame or a plausible wrapper header
    starts (for streams captured mid-PDU); None if there is none."""
    n = len(data)
    p = 0
    while p < n:
        b = data[p]
        if b == FLAG:
            check = check_frame(data, p, n)
            if check.state == "frame" and check.checks:
                return p, "hdlc"
        elif b == 0 and p + WRAPPER_HEADER_LEN < n and data[p + 1] == 1 and plausible_wrapper(
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
        check = check_frame(data, p, n)
        if check.state == "frame":
            return ("hdlc", 0) if check.checks else ("no", 0)
        if check.state == "wait":
            return "wait", (p + check.length + 2 if p + 3 <= n else p + 3)
        return "no", 0
    if b != 0:
        return "no", 0
    if p + 1 >= n:
        return "wait", p + 2
    if data[p + 1] != 1:
        return "no", 0
    if p + WRAPPER_HEADER_LEN >= n:
        return "wait", p + WRAPPER_HEADER_LEN + 1
    if not plausible_wrapper(data, p, n):
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


