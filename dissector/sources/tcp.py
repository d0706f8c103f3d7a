"""TCP stream reassembly: in-order bytes per connection and direction, open/close events.

Segments are delivered in sequence order; retransmitted bytes and overlaps are dropped,
out-of-order segments wait (bounded) for the hole before them. A hole is given up, and reported
as a `tcp.gap` note, when the peer acknowledges data beyond it (the capture missed it), when the
bytes or segments waiting behind it exceed `max_buffered` or `max_segments`, or when the
connection closes or the capture ends.

Memory is bounded however hostile the capture: at most `MAX_CONNECTIONS` connections are followed
at once (the least recently active one is closed, with a `tcp.evicted` note, to make room), and
the bytes and segments waiting behind holes of all connections together stay below
`MAX_TOTAL_BUFFERED` and `MAX_TOTAL_SEGMENTS` (the stream holding most gives up its holes
first).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from dissector.sources.detect import detect_transport
from dissector.stages import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    Direction,
    Finding,
    LinkEvent,
    Record,
    endpoint,
    note,
)

DLMS_PORT = 4059
MAX_BUFFERED = 1 << 20  # bytes waiting behind a hole, per direction
MAX_TRIES = 4  # in-order chunks of an unknown-port connection inspected before giving up
MAX_CLOSED = 4096  # closed connections remembered, so late segments do not reopen them
MAX_CONNECTIONS = 4096  # connections followed at once
MAX_TOTAL_BUFFERED = 64 << 20  # bytes waiting behind holes, all connections together
MAX_SEGMENTS = 4096  # segments waiting behind a hole, per direction
MAX_TOTAL_SEGMENTS = 65_536  # segments waiting behind holes, all connections together

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
_MOD = 1 << 32
_HALF = 1 << 31


@dataclass(slots=True)
class Delivery:
    """In-order stream bytes, as carried by one capture frame."""

    frame_no: int
    time: float
    data: bytes
    comment: str | None = None


@dataclass(slots=True)
class Gap:
    """Bytes of the stream that never arrived: delivery resumes after them."""

    frame_no: int
    time: float
    missing: int
    reason: str


class TcpStream:
    """One direction of a TCP connection: in-order delivery by sequence number.

    Sequence numbers are unwrapped to a growing integer (so 2**32 wrap-around is fine). Only
    out-of-order bytes are held (`buffered`, in `held` segments, each found in O(log n) through
    a heap of their starts); delivered bytes are not kept.
    """

    def __init__(self, max_buffered: int = MAX_BUFFERED,
                 max_segments: int = MAX_SEGMENTS) -> None:
        self.max_buffered = max_buffered
        self.max_segments = max_segments
        self.next_seq: int | None = None  # unwrapped sequence number expected next
        self.buffered = 0
        self.dropped = 0  # retransmitted / overlapping bytes dropped
        self.delivered = 0
        self._acked: int | None = None
        self._starts: list[int] = []  # heap of the starts of waiting segments
        self._waiting: dict[int, Delivery] = {}

    @property
    def held(self) -> int:
        """Segments waiting behind a hole."""
        return len(self._waiting)

    def unwrap(self, seq: int) -> int:
        """A 32-bit sequence number as the unwrapped number nearest to `next_seq`."""
        assert self.next_seq is not None
        diff = (seq - self.next_seq + _HALF) % _MOD - _HALF
        return self.next_seq + diff

    def syn(self, seq: int) -> None:
        """The SYN of this direction: data starts at `seq + 1`."""
        if self.next_seq is None:
            self.next_seq = seq + 1

    def segment(
        self, seq: int, data: bytes, frame_no: int, time: float, comment: str | None = None
    ) -> list[Delivery | Gap]:
        """Add a segment's payload; return what is now deliverable in order."""
        if not data:
            return []
        if self.next_seq is None:
            self.next_seq = seq  # capture started mid-stream
        start = self.unwrap(seq)
        end = start + len(data)
        nxt = self.next_seq
        if end <= nxt:
            self.dropped += len(data)
            return []
        if start < nxt:
            self.dropped += nxt - start
            data = data[nxt - start :]
            start = nxt
        out: list[Delivery | Gap] = []
        if start == nxt:
            self._deliver(Delivery(frame_no, time, data, comment), out)
            self._drain(out)
            return out
        old = self._waiting.get(start)
        if old is None:
            heapq.heappush(self._starts, start)
        elif len(old.data) >= len(data):
            self.dropped += len(data)
            return out
        else:
            self.buffered -= len(old.data)
            self.dropped += len(old.data)
        self._waiting[start] = Delivery(frame_no, time, data, comment)
        self.buffered += len(data)
        if self._acked is not None and self._acked >= self._starts[0]:
            self._skip_hole(out, "acknowledged by the peer but not captured")
        while self.buffered > self.max_buffered:
            self._skip_hole(out, f"not captured, while more than {self.max_buffered} bytes "
                            "after them waited for them")
        while len(self._waiting) > self.max_segments:
            self._skip_hole(out, f"not captured, while more than {self.max_segments} "
                            "segments after them waited for them")
        return out

    def ack(self, ack: int) -> list[Delivery | Gap]:
        """The peer acknowledged up to `ack`: a hole below that will never be filled."""
        if self.next_seq is None:
            return []
        acked = self.unwrap(ack)
        if self._acked is None or acked > self._acked:
            self._acked = acked
        out: list[Delivery | Gap] = []
        if self._starts and self._starts[0] <= acked:
            self._skip_hole(out, "acknowledged by the peer but not captured")
        return out

    def skip(self, count: int) -> list[Delivery | Gap]:
        """`count` bytes of the stream were seen but are not to be delivered (the live tap's
        dissection fell behind): go past them, and deliver what waited behind them."""
        out: list[Delivery | Gap] = []
        if self.next_seq is not None and count > 0:
            self.next_seq += count
            self._drain(out)
        return out

    def flush(self, reason: str) -> list[Delivery | Gap]:
        """Deliver everything still waiting, reporting the holes before it."""
        out: list[Delivery | Gap] = []
        while self._starts:
            self._skip_hole(out, reason)
        return out

    def _deliver(self, item: Delivery, out: list[Delivery | Gap]) -> None:
        out.append(item)
        self.delivered += len(item.data)
        self.next_seq = (self.next_seq or 0) + len(item.data)

    def _drain(self, out: list[Delivery | Gap]) -> None:
        starts = self._starts
        while starts and starts[0] <= (nxt := self.next_seq or 0):
            start = heapq.heappop(starts)
            item = self._waiting.pop(start)
            self.buffered -= len(item.data)
            end = start + len(item.data)
            if end <= nxt:
                self.dropped += len(item.data)
                continue
            if start < nxt:
                self.dropped += nxt - start
                item.data = item.data[nxt - start :]
            self._deliver(item, out)

    def _skip_hole(self, out: list[Delivery | Gap], reason: str) -> None:
        first = self._starts[0]
        missing = first - (self.next_seq or 0)
        if missing > 0:
            item = self._waiting[first]
            out.append(Gap(item.frame_no, item.time, missing, reason))
            self.next_seq = first
        self._drain(out)


@dataclass(slots=True)
class _Connection:
    link: str
    client: tuple[str, int]
    hint: str | None
    taken: bool | None  # None: undecided (unknown port), False: not DLMS
    opened: tuple[int, float] | None  # frame and time of the SYN
    isn: int | None = None
    tries: int = 0
    announced: bool = False
    fins: set[bool] = field(default_factory=set)
    streams: dict[bool, TcpStream] = field(default_factory=dict)  # key: sent by the client


class TcpReassembler:
    """All TCP connections of a capture: reassembly, client/server roles, DLMS selection.

    A connection is taken when one of its ports is 4059 or a configured port (`ports`, whose
    value is the transport hint, or None to detect), or when its first in-order bytes look like
    HDLC or wrapper framing. The client is the SYN sender, else the side not on a DLMS port,
    else the side with the higher port.
    """

    def __init__(self, ports: dict[int, str | None] | None = None,
                 max_buffered: int = MAX_BUFFERED, max_connections: int = MAX_CONNECTIONS,
                 max_total_buffered: int = MAX_TOTAL_BUFFERED,
                 max_segments: int = MAX_SEGMENTS,
                 max_total_segments: int = MAX_TOTAL_SEGMENTS) -> None:
        self.ports: dict[int, str | None] = {DLMS_PORT: None}
        self.ports.update(ports or {})
        self.max_buffered = max_buffered
        self.max_connections = max_connections
        self.max_total_buffered = max_total_buffered
        self.max_segments = max_segments
        self.max_total_segments = max_total_segments
        self.buffered = 0  # bytes waiting behind holes, all streams
        self.held = 0  # segments waiting behind holes, all streams
        self.evicted = 0
        # least recently active first
        self._conns: OrderedDict[tuple[tuple[str, int], tuple[str, int]], _Connection] = (
            OrderedDict())
        self._closed: OrderedDict[tuple[tuple[str, int], tuple[str, int]], _Connection] = (
            OrderedDict())

    @property
    def connections(self) -> int:
        """Connections currently tracked."""
        return len(self._conns)

    def packet(
        self, frame_no: int, time: float, src: str, sport: int, dst: str, dport: int,
        seq: int, ack: int, flags: int, payload: bytes, comment: str | None = None,
    ) -> list[Record | LinkEvent | Finding]:
        """Process one TCP segment; return the records, events and notes it produces."""
        a, b = (src, sport), (dst, dport)
        key = (a, b) if a <= b else (b, a)
        out: list[Record | LinkEvent | Finding] = []
        conn = self._conns.get(key)
        syn_only = flags & (SYN | ACK) == SYN
        if conn is not None and syn_only and conn.isn != seq:
            self._close(key, conn, frame_no, time, out)  # the 4-tuple is reused
            conn = None
        if conn is None and not flags & SYN and key in self._closed:
            conn = self._revive(key, a, seq, payload)
            if conn is None:
                return out  # late ACK, FIN or retransmission of a closed connection
        if conn is None:
            self._closed.pop(key, None)
            conn = self._new(key, a, b, flags, frame_no, time)
            self._conns[key] = conn
        self._conns.move_to_end(key)
        while len(self._conns) > max(1, self.max_connections):
            self._evict(frame_no, time, out)
        from_client = a == conn.client
        if from_client and syn_only:
            conn.isn = seq
        if conn.taken and not conn.announced and flags & SYN:
            conn.announced = True
            out.append(LinkEvent(frame_no, time, conn.link, "open"))
        if conn.taken is not False:
            stream = conn.streams.get(from_client)
            if stream is None:
                stream = conn.streams[from_client] = TcpStream(self.max_buffered,
                                                               self.max_segments)
            if flags & SYN:
                stream.syn(seq)
            if payload:
                before = stream.buffered, stream.held
                self._emit(conn, from_client, stream.segment(seq, payload, frame_no, time, comment),
                           out)
                self._account(stream, before)
            peer = conn.streams.get(not from_client)
            if flags & ACK and peer is not None:
                before = peer.buffered, peer.held
                self._emit(conn, not from_client, peer.ack(ack), out)
                self._account(peer, before)
            if self.buffered > self.max_total_buffered or self.held > self.max_total_segments:
                self._shed(out)
        if flags & RST:
            self._close(key, conn, frame_no, time, out)
        elif flags & FIN:
            conn.fins.add(from_client)
            if len(conn.fins) == 2:
                self._close(key, conn, frame_no, time, out)
        return out

    def skip(self, src: str, sport: int, dst: str, dport: int, count: int
             ) -> list[Record | LinkEvent | Finding]:
        """`count` bytes the sender sent next on this connection are not to be delivered
        (`TcpStream.skip`); what waited behind them is."""
        a, b = (src, sport), (dst, dport)
        conn = self._conns.get((a, b) if a <= b else (b, a))
        out: list[Record | LinkEvent | Finding] = []
        if conn is not None and conn.taken is not False:
            from_client = a == conn.client
            stream = conn.streams.get(from_client)
            if stream is not None:
                before = stream.buffered
                self._emit(conn, from_client, stream.skip(count), out)
                self.buffered += stream.buffered - before
        return out

    def flush(self) -> list[Record | LinkEvent | Finding]:
        """End of capture: deliver what is still waiting behind holes (no close events)."""
        out: list[Record | LinkEvent | Finding] = []
        for conn in self._conns.values():
            if conn.taken is not False:
                for from_client, stream in conn.streams.items():
                    self._emit(conn, from_client,
                               stream.flush("not captured, though bytes after them were, up "
                                            "to the end of the capture"), out)
        self._conns.clear()
        self.buffered = self.held = 0
        return out

    def _account(self, stream: TcpStream, before: tuple[int, int]) -> None:
        """Carry a stream's change in held bytes and segments into the totals."""
        self.buffered += stream.buffered - before[0]
        self.held += stream.held - before[1]

    def _evict(self, frame_no: int, time: float, out: list[Record | LinkEvent | Finding]) -> None:
        """Stop following the least recently active connection (too many are open)."""
        key, conn = next(iter(self._conns.items()))
        self.evicted += 1
        if conn.taken:
            out.append(note(frame_no, time, conn.link, "warning", "tcp.evicted",
                            f"more than {self.max_connections} TCP connections open at once: "
                            "this one, the least recently active, is no longer followed (as if "
                            "it had closed here)"))
        self._close(key, conn, frame_no, time, out)

    def _shed(self, out: list[Record | LinkEvent | Finding]) -> None:
        """Too many bytes or segments wait behind holes: the streams holding most give up
        their holes."""
        while True:
            if self.buffered > self.max_total_buffered:
                what, limit = "bytes", self.max_total_buffered
            elif self.held > self.max_total_segments:
                what, limit = "segments", self.max_total_segments
            else:
                return
            conn, from_client, stream = max(
                ((c, fc, st) for c in self._conns.values() for fc, st in c.streams.items()),
                key=lambda t: t[2].buffered if what == "bytes" else t[2].held,
                default=(None, False, None))
            if conn is None or stream is None or not stream.held:
                self.buffered = self.held = 0
                return
            before = stream.buffered, stream.held
            self._emit(conn, from_client, stream.flush(
                f"not captured, while more than {limit} {what} waited behind holes in all TCP "
                "streams together"), out)
            self._account(stream, before)

    def _revive(self, key: tuple[tuple[str, int], tuple[str, int]], sender: tuple[str, int],
                seq: int, payload: bytes) -> _Connection | None:
        """New data after FIN/RST (peers do send it, and it is worth dissecting): reopen the
        closed connection with its stream state, so retransmissions are still recognised."""
        conn = self._closed[key]
        stream = conn.streams.get(sender == conn.client)
        if not payload or conn.taken is False:
            return None
        if stream is not None and stream.next_seq is not None:
            if stream.unwrap(seq) + len(payload) <= stream.next_seq:
                return None
        del self._closed[key]
        conn.fins.clear()
        conn.announced = False
        conn.opened = None
        self._conns[key] = conn
        return conn

    def _new(self, key: tuple[tuple[str, int], tuple[str, int]], a: tuple[str, int],
             b: tuple[str, int], flags: int, frame_no: int, time: float) -> _Connection:
        if flags & SYN:
            client, server = (a, b) if not flags & ACK else (b, a)
        elif b[1] in self.ports and a[1] not in self.ports:
            client, server = a, b
        elif a[1] in self.ports and b[1] not in self.ports:
            client, server = b, a
        else:
            client, server = (b, a) if a[1] < b[1] else (a, b)
        known = [p for p in (server[1], client[1]) if p in self.ports]
        link = f"tcp {endpoint(*client)}-{endpoint(*server)}"
        hint = self.ports[known[0]] if known else None
        opened = (frame_no, time) if flags & SYN else None
        return _Connection(link, client, hint, True if known else None, opened)

    def _emit(self, conn: _Connection, from_client: bool, items: Iterable[Delivery | Gap],
              out: list[Record | LinkEvent | Finding]) -> None:
        direction: Direction = CLIENT_TO_SERVER if from_client else SERVER_TO_CLIENT
        for item in items:
            if conn.taken is None and isinstance(item, Delivery):
                transport = detect_transport(item.data)
                if transport in ("hdlc", "wrapper"):
                    conn.taken, conn.hint = True, transport
                else:
                    conn.tries += 1
                    if conn.tries >= MAX_TRIES:
                        conn.taken = False
                        conn.streams.clear()
                    continue
            if not conn.taken:
                continue
            if not conn.announced:
                conn.announced = True
                frame_no, time = conn.opened or (item.frame_no, item.time)
                out.append(LinkEvent(frame_no, time, conn.link, "open"))
            if isinstance(item, Delivery):
                out.append(Record(item.frame_no, item.time, conn.link, direction, item.data,
                                  conn.hint, comment=item.comment))
            else:
                out.append(note(item.frame_no, item.time, conn.link, "warning", "tcp.gap",
                                f"{item.missing} byte(s) of the {direction} stream were not "
                                f"captured ({item.reason}); PDUs spanning the gap are lost",
                                direction))

    def _close(self, key: tuple[tuple[str, int], tuple[str, int]], conn: _Connection,
               frame_no: int, time: float, out: list[Record | LinkEvent | Finding]) -> None:
        if conn.taken is not False:
            for from_client, stream in conn.streams.items():
                self.buffered -= stream.buffered
                self.held -= stream.held
                self._emit(conn, from_client, stream.flush(
                    "not captured, though bytes after them were, before the connection "
                    "closed"), out)
        if conn.taken and conn.announced:
            out.append(LinkEvent(frame_no, time, conn.link, "close"))
        del self._conns[key]
        self._closed[key] = conn
        if len(self._closed) > MAX_CLOSED:
            self._closed.popitem(last=False)
