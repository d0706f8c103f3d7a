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
from dissector.stages import UNKNOWN
from layers.expert import Finding


@dataclass(slots=True)
class Frame:
    """One link-layer packet (captured, or synthesised by the tap)."""

    frame_no: int
    time: float
    linktype: int
    data: bytes


class TcpSource(LiveSource, ABC):
    """Link-layer packets through the capture decoder, TCP reassembly and framing of `read`."""

    def __init__(self, dissection: LiveDissection | None, stop: threading.Event | None,
                 capture_path: str | None, linktype: int | None,
                 ports: dict[int, str | None] | None) -> None:
        super().__init__(dissection, stop, capture_path, linktype)
        self.ports: dict[int, str | None] = dict(ports or {})

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
                    yield from decoder.frame(item.frame_no, item.time, item.linktype, item.data,
                                             UNKNOWN, None)
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

    def packet(self, data: bytes, when: float, linktype: int) -> None:
        """Write one captured (or synthesised) link-layer packet, then queue it."""
        assert self.capture is not None
        self.capture.record(data, when, lambda n: Frame(n, when, linktype, data),
                            linktype=linktype)
