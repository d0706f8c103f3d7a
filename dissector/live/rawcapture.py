"""The raw capture of a live source: every record numbered and written, flushed, to a pcapng
file before it is dissected."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

LINKTYPE_ETHERNET = 1


class LiveError(Exception):
    """A live source cannot start, or the capture file cannot be written (one line)."""


class RawCapture:
    """Numbers every record a source receives and writes it, flushed, to a pcapng file.

    `record` writes first and queues the dissection item second, under one lock, so frame
    numbers, file order and dissection order agree across reader threads. Without a path only
    the numbering and the counts are kept. `linktype` None: the header waits for the first
    record (tshark tells the link type with the first packet).
    """

    def __init__(self, path: str | None, linktype: int | None,
                 sink: Callable[[object], None]) -> None:
        self.path = path
        self.count = 0
        self.bytes = 0
        self._linktype = linktype
        self._sink = sink
        self._lock = threading.Lock()
        self._writer: Any = None
        self._ifaces: dict[tuple[str | None, int], str | None] = {}
        if path:
            from scapy.utils import RawPcapNgWriter

            try:
                self._writer = RawPcapNgWriter(path)
                if linktype is not None:
                    self._header(linktype)
            except OSError as exc:
                raise LiveError(f"{path}: {exc.strerror or exc}") from None

    def _header(self, linktype: int) -> None:
        """Section and first interface at once: a reader of a fifo (Wireshark) sees them."""
        self._writer.linktype = linktype
        self._writer.write_header(None)
        self._writer.flush()
        self._ifaces[(None, linktype)] = None

    def record(self, data: bytes, when: float, make: Callable[[int], object] | None, *,
               linktype: int, direction: int | None = None, ifname: str | None = None) -> int:
        """Write one record, then queue `make(frame_no)` for dissection (`make` None: written
        only, dissection is behind); the frame number."""
        with self._lock:
            self.count += 1
            self.bytes += len(data)
            if self._writer is not None:
                self._write(data, when, linktype, direction, ifname)
            if make is not None:
                self._sink(make(self.count))
            return self.count

    def _write(self, data: bytes, when: float, linktype: int, direction: int | None,
               ifname: str | None) -> None:
        from scapy.packet import Raw

        try:
            if not self._ifaces:
                self._header(linktype)
            key = (ifname, linktype)
            if key not in self._ifaces:  # a new name makes a new interface block
                self._ifaces[key] = ifname or f"link type {linktype}"
            pkt = Raw(data)
            pkt.sniffed_on = self._ifaces[key]
            pkt.direction = direction
            self._writer.linktype = linktype
            self._writer.write_packet(pkt, sec=when)
            self._writer.flush()
        except OSError as exc:
            raise LiveError(f"{self.path}: cannot write the capture ({exc.strerror or exc})"
                            ) from None

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                with contextlib.suppress(OSError):
                    if not self._ifaces:  # nothing captured: still a valid file
                        self._header(self._linktype or LINKTYPE_ETHERNET)
                    self._writer.close()
                self._writer = None

    def describe(self) -> str:
        where = f" written to {self.path}" if self.path else ""
        return f"{self.count} record(s), {self.bytes} byte(s) captured{where}"


