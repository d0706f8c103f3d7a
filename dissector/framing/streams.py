"""Records -> PDUs: one complete HDLC frame, wrapper PDU, M-Bus frame, sign-on message or raw
APDU at a time.

TCP streams (already in order) and serial lines are cut incrementally per link and direction;
UDP datagrams are cut one by one (several PDUs per datagram are fine, none continues into the
next). Each PDU lists every capture frame that carried bytes of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from dissector.framing.hdlc import HdlcSplitter
from dissector.framing.mbus import MbusSplitter
from dissector.framing.serial import SerialDemux
from dissector.framing.splitter import Splitter, WrapperSplitter
from dissector.sources.detect import StartFinder, strip_llc_432
from dissector.stages import UNKNOWN, Direction, Item, LinkEvent, Pdu, Record
from layers.expert import Finding

__all__ = ["pdus_from_records"]

MAX_PROBE = 64 * 1024  # bytes kept while looking for the framing of a stream
#: Findings that say bytes of a stream were lost: a PDU open there is cut.
STREAM_BREAKS = frozenset({"tcp.gap", "tap.dissection-behind"})


def new_splitter(transport: str) -> Splitter:
    """A splitter for "hdlc", "wrapper" or "mbus"."""
    if transport == "wrapper":
        return WrapperSplitter()
    if transport == "hdlc":
        return HdlcSplitter()
    if transport == "mbus":
        return MbusSplitter()
    raise ValueError(f"no splitter for transport {transport!r}")


class _Channel:
    """One byte stream: a link in one direction (or a serial line whose direction is unknown)."""

    def __init__(self, link: str, direction: Direction, transport: str | None) -> None:
        self.link = link
        self.direction = direction
        self.transport: str | None = None
        self.splitter: Splitter | SerialDemux | None = None
        self.probe: list[Record] = []
        self.probe_size = 0
        self.probe_dropped = 0
        self.finder: StartFinder | None = None
        self.comments: dict[int, str] = {}
        if transport:
            self._choose(transport)

    def _choose(self, transport: str) -> None:
        self.transport = transport
        if transport == "serial":
            self.splitter = SerialDemux(self.link, self.direction)
        elif transport in ("hdlc", "wrapper", "mbus"):
            self.splitter = new_splitter(transport)

    def feed(self, record: Record) -> Iterator[Pdu | Finding]:
        if record.comment:
            self.comments[record.frame_no] = record.comment
        if self.transport is None:
            yield from self._probe(record)
        elif self.splitter is None:
            yield self._pdu(Pdu(record.data, "raw", [record.frame_no], record.time))
        else:
            yield from self._cut(self.splitter.feed(record.data, record.frame_no, record.time))

    def flush(self) -> Iterator[Pdu | Finding]:
        if self.splitter is not None:
            yield from self._cut(self.splitter.flush())
        elif self.probe:
            first = self.probe[0]
            yield Finding("warning", "framing.not-found",
                          f"{self.probe_size + self.probe_dropped} byte(s) on a DLMS port"
                          " without HDLC or wrapper framing", first.frame_no,
                          self.probe[-1].time, self.link, self.direction)
            self.probe.clear()
            self.finder = None

    def interrupt(self) -> Iterator[Pdu | Finding]:
        if isinstance(self.splitter, SerialDemux):
            yield from self._cut(self.splitter.silence())
        elif self.splitter is not None:
            yield from self._cut(self.splitter.interrupt())

    def _probe(self, record: Record) -> Iterator[Pdu | Finding]:
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
            yield Finding("note", f"{transport}.skipped-bytes",
                          f"skipped {offset + self.probe_dropped} byte(s) before the first"
                          f" {transport} PDU (capture started inside a PDU)", records[0].frame_no,
                          records[0].time, self.link, self.direction)
        for r in records:
            take = r.data[offset:] if offset < len(r.data) else b""
            offset = max(0, offset - len(r.data))
            if take:
                yield from self.feed(Record(r.frame_no, r.time, r.link, r.direction, take))

    def _cut(self, items: Iterable[Pdu | Finding]) -> Iterator[Pdu | Finding]:
        for item in items:
            if isinstance(item, Pdu):
                yield self._pdu(item)
            elif item.link:
                yield item
            else:
                yield replace(item, link=self.link, direction=self.direction)

    def _pdu(self, pdu: Pdu) -> Pdu:
        """The PDU on this channel: its link and direction, an IEC 61334-4-32 LLC header
        removed, the frames' comments."""
        pdu.link = self.link
        if pdu.direction == UNKNOWN:
            pdu.direction = self.direction
        if pdu.transport == "raw":
            pdu.data = strip_llc_432(pdu.data)
        if self.comments:
            frames = pdu.frames
            texts = [self.comments[f] for f in frames if f in self.comments]
            pdu.comment = "; ".join(dict.fromkeys(texts)) or None
            low = frames[0] if frames else 0
            for f in [f for f in self.comments if f < low]:
                del self.comments[f]
        return pdu


def pdus_from_records(items: Iterable[Item]) -> Iterator[Item]:
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
            if isinstance(item, Finding) and item.code in STREAM_BREAKS:
                channel = channels.get((item.link, item.direction))
                if channel is not None:
                    yield from channel.interrupt()
            yield item
    for channel in channels.values():
        yield from channel.flush()
