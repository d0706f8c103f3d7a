"""What the live TCP sources share: link-layer packets written to the raw capture, then through
the capture decoder, TCP reassembly and stream framing of `read`, and dissected."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dissector.framing.streams import pdus_from_records
from dissector.live.base import LiveSource
from dissector.live.dissection import LiveDissection
from dissector.sources.frames import FrameDecoder
from dissector.stages import CLIENT_TO_SERVER, SERVER_TO_CLIENT, UNKNOWN, note
from layers.expert import Finding


@dataclass(slots=True)
class Frame:
    """One link-layer packet (captured, or synthesised by the tap); `link` and `size` (its
    payload bytes) when its connection's backlog is counted."""

    frame_no: int
    time: float
    linktype: int
    data: bytes
    link: str = ""
    size: int = 0


@dataclass(slots=True)
class Skipped:
    """Bytes one side of a connection sent that were written to the capture but are not
    dissected: dissection had fallen behind (frames `first`..`last`)."""

    link: str
    ends: tuple[tuple[str, int], tuple[str, int]]  # (sender, receiver)
    from_client: bool
    first: int
    last: int = 0
    time: float = 0.0
    count: int = 0
    size: int = 0

    def add(self, frame_no: int, time: float, size: int) -> None:
        self.last, self.time = frame_no, time
        self.count += 1
        self.size += size

    def finding(self) -> Finding:
        direction = CLIENT_TO_SERVER if self.from_client else SERVER_TO_CLIENT
        return note(self.last, self.time, self.link, "warning", "tap.dissection-behind",
                    f"dissection fell behind on this connection: {self.count} packet(s),"
                    f" {self.size} byte(s) of the {direction} stream (frames"
                    f" {self.first}-{self.last}) are in the capture file but were not"
                    " dissected; PDUs spanning them are lost", direction)


class TcpSource(LiveSource, ABC):
    """Link-layer packets through the capture decoder, TCP reassembly and framing of `read`."""

    def __init__(self, dissection: LiveDissection | None, stop: threading.Event | None,
                 capture_path: str | None, linktype: int | None,
                 ports: dict[int, str | None] | None) -> None:
        super().__init__(dissection, stop, capture_path, linktype)
        self.ports: dict[int, str | None] = dict(ports or {})
        self.backlog: dict[str, int] = {}  # link -> payload bytes queued, not yet dissected
        self._backlog_lock = threading.Lock()

    @abstractmethod
    def open(self) -> Any:
        """Start capturing (sockets, capture file); `LiveError` when that fails."""

    @abstractmethod
    def _producers(self) -> None:
        """Start the threads that capture and queue packets."""

    def run(self, duration: float | None = None) -> None:
        if self.capture is None:
            self.open()
        self._producers()
        decoder = FrameDecoder(self.ports)  # type: ignore[arg-type]

        def records() -> Iterator[Any]:
            for item in self._items(duration):
                if isinstance(item, Frame):
                    self.consumed(item)
                    yield from decoder.frame(item.frame_no, item.time, item.linktype, item.data,
                                             UNKNOWN, None)
                elif isinstance(item, Skipped):
                    (src, sport), (dst, dport) = item.ends
                    yield from decoder.tcp.skip(src, sport, dst, dport, item.size)
                    yield item.finding()
                elif isinstance(item, Finding):
                    yield item
            yield from decoder.finish()

        try:
            for item in pdus_from_records(records()):
                if self.dissection is not None:
                    self.dissection.process(item)
            if self.dissection is not None:
                self.dissection.finish()
        finally:
            self._shutdown()

    def consumed(self, item: Any) -> None:
        """A queued frame left the queue (dissected, or dropped at a stop)."""
        if isinstance(item, Frame) and item.link:
            with self._backlog_lock:
                left = self.backlog.get(item.link, 0) - item.size
                if left > 0:
                    self.backlog[item.link] = left
                else:
                    self.backlog.pop(item.link, None)

    def packet(self, data: bytes, when: float, linktype: int) -> None:
        """Write one captured (or synthesised) link-layer packet, then queue it."""
        assert self.capture is not None
        self.capture.record(data, when, lambda n: Frame(n, when, linktype, data),
                            linktype=linktype)
