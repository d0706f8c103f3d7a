"""Records -> PDUs: one complete HDLC frame or wrapper PDU (or raw APDU) at a time.

TCP streams (already in order) and serial lines are cut incrementally per link and direction;
UDP datagrams are cut one by one (several PDUs per datagram are fine, none continues into the
next). Each PDU lists every capture frame that carried bytes of it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

from dissector.framing.splitter import (
    FramingNote,
    HdlcSplitter,
    Piece,
    StartFinder,
    Transport,
    WrapperSplitter,
    new_splitter,
    strip_llc_432,
)
from dissector.sources.capture import CaptureSource, read_capture
from dissector.stages import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    UNKNOWN,
    Direction,
    LinkEvent,
    Note,
    Record,
)

__all__ = ["Note", "Pdu", "hdlc_direction", "iter_pdus", "pdus_from_records"]

MAX_PROBE = 64 * 1024  # bytes kept while looking for the framing of a stream
MAX_LEARNED = 4096  # HDLC address pairs whose direction a stream remembers
LLC_REQUEST = b"\xe6\xe6"
LLC_RESPONSE = b"\xe6\xe7"
_COMMANDS = frozenset({0x83, 0x43})  # SNRM, DISC (P/F bit cleared)
_RESPONSES = frozenset({0x63, 0x0F, 0x87})  # UA, DM, FRMR


@dataclass(slots=True)
class Pdu:
    """One complete HDLC frame (flag to flag inclusive), one wrapper PDU (header + APDU), or
    one raw APDU (a datagram without framing; an IEC 61334-4-32 LLC header is removed)."""

    frames: list[int]
    time: float
    link: str
    direction: Direction
    transport: Transport
    data: bytes
    comment: str | None = None


def _hdlc_addresses(frame: bytes) -> tuple[bytes, bytes, int] | None:
    """(destination, source, control) of an HDLC frame starting with its flag, or None."""
    p = 3
    parts = []
    for _ in range(2):
        start = p
        while p < len(frame) and not frame[p] & 1 and p - start < 4:
            p += 1
        p += 1
        if p > len(frame) or p - start not in (1, 2, 4):
            return None
        parts.append(frame[start:p])
    if p >= len(frame):
        return None
    return parts[0], parts[1], frame[p]


def hdlc_direction(frame: bytes, learned: dict[tuple[bytes, bytes], Direction] | None = None
                   ) -> Direction:
    """Direction of an HDLC frame from its own bytes, when they tell.

    Client addresses are one byte, server addresses may be longer; SNRM/DISC are commands and
    UA/DM/FRMR responses; the first segment of an I frame has the LLC E6E6 (command) or E6E7
    (response). `learned` remembers address pairs already resolved, so later frames between
    the same two stations (RR, later segments) are resolved too.
    """
    parsed = _hdlc_addresses(frame)
    if parsed is None:
        return UNKNOWN
    dest, src, control = parsed
    direction: Direction = UNKNOWN
    if len(dest) > 1 and len(src) == 1:
        direction = CLIENT_TO_SERVER
    elif len(dest) == 1 and len(src) > 1:
        direction = SERVER_TO_CLIENT
    elif control & 0xEF in _COMMANDS:
        direction = CLIENT_TO_SERVER
    elif control & 0xEF in _RESPONSES:
        direction = SERVER_TO_CLIENT
    elif not control & 1 or control & 0xEF == 0x03:
        info = 3 + len(dest) + len(src) + 3  # control, HCS
        llc = frame[info : info + 2]
        if llc == LLC_REQUEST:
            direction = CLIENT_TO_SERVER
        elif llc == LLC_RESPONSE:
            direction = SERVER_TO_CLIENT
    if learned is None or dest == src:
        return direction
    if direction == UNKNOWN:
        return learned.get((dest, src), UNKNOWN)
    if len(learned) >= MAX_LEARNED and (dest, src) not in learned:
        learned.clear()  # a flood of addresses: start over rather than grow without bound
    learned[(dest, src)] = direction
    learned[(src, dest)] = SERVER_TO_CLIENT if direction == CLIENT_TO_SERVER else CLIENT_TO_SERVER
    return direction


class _Channel:
    """One byte stream: a link in one direction (or a serial line whose direction is unknown)."""

    def __init__(self, link: str, direction: Direction, transport: str | None) -> None:
        self.link = link
        self.direction = direction
        self.transport: str | None = None
        self.splitter: HdlcSplitter | WrapperSplitter | None = None
        self.probe: list[Record] = []
        self.probe_size = 0
        self.probe_dropped = 0
        self.finder: StartFinder | None = None
        self.comments: dict[int, str] = {}
        self.learned: dict[tuple[bytes, bytes], Direction] = {}
        if transport:
            self._choose(transport)

    def _choose(self, transport: str) -> None:
        self.transport = transport
        if transport in ("hdlc", "wrapper", "mbus"):
            self.splitter = new_splitter(transport)

    def feed(self, record: Record) -> Iterator[Pdu | Note]:
        if record.comment:
            self.comments[record.frame_no] = record.comment
        if self.transport is None:
            yield from self._probe(record)
        elif self.splitter is None:
            yield self._pdu([record.frame_no], record.time, record.data)
        else:
            yield from self._cut(self.splitter.feed(record.data, record.frame_no, record.time))

    def flush(self) -> Iterator[Pdu | Note]:
        if self.splitter is not None:
            yield from self._cut(self.splitter.flush())
        elif self.probe:
            first = self.probe[0]
            yield Note(first.frame_no, self.probe[-1].time, self.link, "warning",
                       "framing.not-found",
                       f"{self.probe_size + self.probe_dropped} byte(s) on a DLMS port without "
                       "HDLC or wrapper framing", self.direction)
            self.probe.clear()
            self.finder = None

    def interrupt(self) -> Iterator[Pdu | Note]:
        if self.splitter is not None:
            yield from self._cut(self.splitter.interrupt())

    def _probe(self, record: Record) -> Iterator[Pdu | Note]:
        """Look for the framing of a stream whose transport is unknown (a capture that starts
        in the middle of a PDU, or a DLMS port without a hint). At most `MAX_PROBE` bytes are
        held; each byte is examined once (`StartFinder`), however small the records."""
        if self.finder is None:
            self.finder = StartFinder()
        self.probe.append(record)
        self.probe_size += len(record.data)
        found = self.finder.feed(record.data)
        if found is None:
            while self.probe_size > MAX_PROBE and len(self.probe) > 1:
                dropped = len(self.probe.pop(0).data)
                self.probe_size -= dropped
                self.probe_dropped += dropped
                self.finder.drop(self.probe_dropped)
            return
        offset, transport = found
        offset -= self.probe_dropped
        self._choose(transport)
        records, self.probe, self.probe_size, self.finder = self.probe, [], 0, None
        if offset or self.probe_dropped:
            yield Note(records[0].frame_no, records[0].time, self.link, "note",
                       f"{transport}.skipped-bytes",
                       f"skipped {offset + self.probe_dropped} byte(s) before the first "
                       f"{transport} PDU (capture started inside a PDU)", self.direction)
        for r in records:
            take = r.data[offset:] if offset < len(r.data) else b""
            offset = max(0, offset - len(r.data))
            if take:
                yield from self.feed(Record(r.frame_no, r.time, r.link, r.direction, take))

    def _cut(self, items: list[Piece | FramingNote]) -> Iterator[Pdu | Note]:
        for item in items:
            if isinstance(item, Piece):
                yield self._pdu(item.frames, item.time, item.data)
            else:
                yield Note(item.frames[0] if item.frames else 0, item.time, self.link,
                           item.severity, item.code, item.message, self.direction)

    def _pdu(self, frames: list[int], time: float, data: bytes) -> Pdu:
        direction = self.direction
        transport = cast(Transport, self.transport or "raw")
        if transport == "hdlc" and direction == UNKNOWN:
            direction = hdlc_direction(data, self.learned)
        elif transport == "raw":
            data = strip_llc_432(data)
        comment = None
        if self.comments:
            texts = [self.comments[f] for f in frames if f in self.comments]
            comment = "; ".join(dict.fromkeys(texts)) or None
            low = frames[0] if frames else 0
            for f in [f for f in self.comments if f < low]:
                del self.comments[f]
        return Pdu(frames, time, self.link, direction, transport, data, comment)


def pdus_from_records(items: Iterator[Record | LinkEvent | Note]
                      ) -> Iterator[Pdu | LinkEvent | Note]:
    """Cut the records of any source into PDUs, passing events and notes through in order."""
    channels: dict[tuple[str, Direction], _Channel] = {}
    for item in items:
        if isinstance(item, Record):
            if item.datagram:
                channel = _Channel(item.link, item.direction, item.transport_hint)
                yield from channel.feed(item)
                yield from channel.flush()
                continue
            key = (item.link, item.direction)
            channel = channels.get(key)
            if channel is None:
                channel = channels[key] = _Channel(item.link, item.direction,
                                                   item.transport_hint)
            yield from channel.feed(item)
        elif isinstance(item, LinkEvent):
            if item.kind == "close":
                for key in [k for k in channels if k[0] == item.link]:
                    yield from channels.pop(key).flush()
            yield item
        else:
            if item.code == "tcp.gap":
                channel = channels.get((item.link, item.direction))
                if channel is not None:
                    yield from channel.interrupt()
            yield item
    for channel in channels.values():
        yield from channel.flush()


def iter_pdus(path: CaptureSource | Sequence[CaptureSource], ports: dict[int, str] | None = None
              ) -> Iterator[Pdu | LinkEvent | Note]:
    """The PDUs, link events and notes of a capture file (or of several files read as one),
    lazily, in capture order.

    Raises `sources.CaptureError` at once when the file is not a readable capture.
    """
    return pdus_from_records(read_capture(path, ports))
