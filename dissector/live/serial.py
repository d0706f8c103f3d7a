"""Serial taps: one port (a half-duplex bus: optical probe, RS-485) or two (a Y-tap), read in
threads, every record written to the raw capture, then cut by the serial demultiplexer
(`dissector.framing.serial`) and dissected.

Records are cut at HDLC frame ends, sign-on line ends and silences; a silence longer than
`SerialSettings.silence()` inside a frame ends it (line noise, a frame cut at start-up). The
baud rate an IEC 62056-21 acknowledgement selects is followed; with `sign_on` the line starts
at 300 Bd 7E1 and goes back there after an HDLC disconnect.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from dissector.framing.serial import SerialDemux
from dissector.linktypes import LINKTYPE_USER0
from dissector.live.base import POLL, Backoff, LiveSource
from dissector.live.dissection import LiveDissection
from dissector.live.rawcapture import LiveError
from dissector.stages import (
    CLIENT_TO_SERVER,
    SERIAL_LINK,
    SERVER_TO_CLIENT,
    UNKNOWN,
    Direction,
    Pdu,
    reverse,
)
from layers.expert import Finding, Severity
from layers.hdlc_bytes import (
    FLAG,
    FORMAT_TYPE,
    address_direction,
    fcs_ok,
    frame_length,
    header_direction,
    parse_header,
)
from layers.iec62056_21 import ACK, ModeE, ModeEAck, baud_rate

try:
    import termios

    #: What pyserial raises when a port fails or refuses settings.
    PORT_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, termios.error)
except ImportError:  # not POSIX
    PORT_ERRORS = (OSError, ValueError)

#: pcapng EPB direction flags as `read` interprets them on a serial link (taken at the client).
PCAPNG_FLAGS: dict[str, int] = {CLIENT_TO_SERVER: 2, SERVER_TO_CLIENT: 1}
MAX_RECORD = 65535  # bytes of one capture record (the snap length of the file written)
_SIGN_ON_STARTS = (ord("/"), ACK)


@dataclass(frozen=True)
class SerialSettings:
    """Line settings of a serial port; `gap` is the silence (seconds) that ends a record and
    cuts an open frame (None: 10 character times, at least 50 ms)."""

    baud: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    gap: float | None = None

    def char_time(self) -> float:
        bits = 1 + self.bytesize + (self.parity != "N") + self.stopbits
        return bits / self.baud

    def silence(self) -> float:
        return self.gap if self.gap is not None else max(0.05, 10 * self.char_time())

    def __str__(self) -> str:
        stop = f"{self.stopbits:g}"
        return f"{self.baud} {self.bytesize}{self.parity}{stop}"


#: IEC 62056-21 sign-on speed and framing (modes C and E start at 300 Bd, 7E1).
SIGN_ON_SETTINGS = SerialSettings(300, 7, "E", 1)


def open_serial(url: str, settings: SerialSettings) -> Any:
    """Open a serial port (a device or a pyserial URL such as rfc2217://) for reading."""
    import serial

    try:
        return serial.serial_for_url(url, baudrate=settings.baud, bytesize=settings.bytesize,
                                     parity=settings.parity, stopbits=settings.stopbits,
                                     timeout=POLL)
    except PORT_ERRORS as exc:
        raise LiveError(f"cannot open {url}: {exc}") from None


def record_end(buf: bytes | bytearray, after_flag: bool = False) -> int:
    """Length of the first complete record at the start of `buf`: an HDLC frame from flag to
    flag (or from its format byte when the previous record ended with the flag it shares),
    a sign-on line through CR LF, or the bytes before the next flag; 0 when none is complete.
    Only where records end depends on this: framing itself runs on the byte stream."""
    n = len(buf)
    if not n:
        return 0
    first = buf[0]
    if first == FLAG:
        p = 0
        while p + 1 < n and buf[p + 1] == FLAG:
            p += 1
        if p + 3 > n:
            return 0
        if buf[p + 1] >> 4 != FORMAT_TYPE:
            q = buf.find(FLAG, p + 1)
            return max(q, 0)
        end = p + frame_length(buf, p) + 2
        return end if end <= n and buf[end - 1] == FLAG else 0
    if after_flag and first >> 4 == FORMAT_TYPE and n >= 2:
        end = frame_length(buf, -1) + 1
        if end <= n and buf[end - 1] == FLAG:
            return end
    if first in _SIGN_ON_STARTS:
        q = buf.find(b"\r\n")
        return q + 2 if q >= 0 else 0
    return max(buf.find(FLAG), 0)


def next_record(buf: bytes | bytearray, after_flag: bool = False) -> int:
    """Length of the capture record to write now from the start of `buf` (0: wait for more):
    the first complete record (`record_end`), never more than `MAX_RECORD` bytes (the snap
    length of the capture file: a longer record would be cut by its readers)."""
    end = record_end(buf, after_flag)
    if end == 0 and len(buf) >= MAX_RECORD:
        end = MAX_RECORD
    return min(end, MAX_RECORD)


@dataclass(slots=True)
class Chunk:
    """Bytes of one serial record."""

    port: int
    frame_no: int
    time: float
    data: bytes


@dataclass(slots=True)
class Silence:
    """The line went quiet (or the port was lost): a frame still open is cut."""

    port: int


class PortReader:
    """Reads one serial port in its own thread: cuts records, writes them to the capture,
    queues them; reports a lost port and reopens it with back-off."""

    def __init__(self, source: SerialSniffer, index: int, url: str,
                 settings: SerialSettings, direction: Direction) -> None:
        self.source = source
        self.index = index
        self.url = url
        self.settings = settings
        self.direction = direction
        self.ifname = url if index else None
        self.port: Any = None
        self.backoff = Backoff(0.25, 5.0)
        self._pending: SerialSettings | None = None
        self._lock = threading.Lock()

    @property
    def flag(self) -> int | None:
        return PCAPNG_FLAGS.get(self.direction)

    def change(self, settings: SerialSettings) -> None:
        """Switch the line settings (thread-safe; applied between records)."""
        with self._lock:
            self._pending = settings

    def run(self) -> None:
        stop = self.source.stop_event
        lost_at = 0.0
        try:
            while not stop.is_set():
                if self.port is None:
                    try:
                        self.port = open_serial(self.url, self.settings)
                    except LiveError:
                        stop.wait(self.backoff.next())
                        continue
                    self.backoff.reset()
                    self._note("note", "serial.reconnected",
                               f"{self.url}: reopened after {time.monotonic() - lost_at:.1f} s, "
                               f"reading at {self.settings}")
                try:
                    self._pump()
                except PORT_ERRORS as exc:
                    lost_at = time.monotonic()
                    self._note("warning", "serial.disconnected",
                               f"{self.url}: {' '.join(str(exc).split())}; reopening with "
                               f"back-off (up to {self.backoff.cap:g} s between tries)")
                    self.close()
        finally:
            self.close()

    def close(self) -> None:
        """Close the port (it is reopened when the reader runs again)."""
        if self.port is not None:
            with contextlib.suppress(OSError):
                self.port.close()
            self.port = None

    def _note(self, severity: Severity, code: str, message: str) -> None:
        self.source.note(severity, code, message, SERIAL_LINK, self.direction)

    def _pump(self) -> None:
        """Read until stopped; raise OSError when the port goes away."""
        stop = self.source.stop_event
        buf = bytearray()
        first = 0.0  # arrival (wall clock) of buf[0]
        last = time.monotonic()
        active = after_flag = False
        try:
            while not stop.is_set():
                self._apply_pending(buf, first)
                port = self.port
                chunk = port.read(port.in_waiting or 1)
                now = time.monotonic()
                if chunk:
                    wall = time.time()
                    if not buf:
                        first = wall
                    buf += chunk
                    last, active = now, True
                    while (end := next_record(buf, after_flag)) > 0:
                        if end == MAX_RECORD and record_end(buf, after_flag) != end:
                            self._note("warning", "serial.record-split",
                                       f"{MAX_RECORD} bytes without a frame boundary or a "
                                       "silence: written as one capture record, the bytes "
                                       "after them go on in the next")
                        after_flag = buf[end - 1] == FLAG
                        self._emit(bytes(buf[:end]), first)
                        del buf[:end]
                        first = wall
                elif active and now - last >= self.settings.silence():
                    self._emit(bytes(buf), first)
                    buf.clear()
                    active = False
                    self.source.queue.put(Silence(self.index))
        finally:
            self._emit(bytes(buf), first)
            if active:
                self.source.queue.put(Silence(self.index))

    def _emit(self, data: bytes, when: float) -> None:
        """Write `data` as capture records of at most `MAX_RECORD` bytes each."""
        if self.source.capture is None:
            return
        index = self.index
        for at in range(0, len(data), MAX_RECORD):
            piece = data[at:at + MAX_RECORD]
            self.source.capture.record(piece, when, lambda n, p=piece: Chunk(index, n, when, p),
                                       linktype=LINKTYPE_USER0, direction=self.flag,
                                       ifname=self.ifname)

    def _apply_pending(self, buf: bytearray, first: float) -> None:
        with self._lock:
            settings, self._pending = self._pending, None
        if settings is None or settings == self.settings:
            return
        self._emit(bytes(buf), first)  # bytes read at the old speed stay one record
        buf.clear()
        refused = []
        for name, value in (("baudrate", settings.baud), ("bytesize", settings.bytesize),
                            ("parity", settings.parity), ("stopbits", settings.stopbits)):
            if getattr(self.port, name) == value:
                continue
            try:
                setattr(self.port, name, value)
            except PORT_ERRORS as exc:
                refused.append(f"{name} {value} ({' '.join(str(exc).split())})")
        if refused and refused[0].startswith("baudrate"):
            self._note("warning", "serial.settings-failed",
                       f"{self.url}: the adapter refuses {settings}: {', '.join(refused)}; "
                       f"the line is read at {self.settings} as before")
            return
        self.settings = settings
        refusal = f" (the adapter kept its own {', '.join(refused)})" if refused else ""
        self._note("note", "serial.settings", f"{self.url}: now reading at {settings}{refusal}")


class SerialSniffer(LiveSource):
    """Serial taps: one port (half-duplex bus) or two (Y-tap: client's line, meter's line).

    `sign_on`: the line starts at 300 Bd 7E1 (IEC 62056-21) and goes back there after an HDLC
    disconnect; an acknowledgement's baud rate is followed in any case.
    """

    def __init__(self, ports: list[str], settings: SerialSettings | None = None, *,
                 dissection: LiveDissection | None = None, capture_path: str | None = None,
                 sign_on: bool = False, stop: threading.Event | None = None) -> None:
        if not 1 <= len(ports) <= 2:
            raise LiveError("give one serial port (half-duplex) or two (one per direction)")
        super().__init__(dissection, stop, capture_path, LINKTYPE_USER0)
        self.settings = settings or SerialSettings()
        self.sign_on = sign_on
        start = replace(SIGN_ON_SETTINGS, gap=self.settings.gap) if sign_on else self.settings
        directions = [UNKNOWN] if len(ports) == 1 else [CLIENT_TO_SERVER, SERVER_TO_CLIENT]
        self.readers = [PortReader(self, i, url, start, d)
                        for i, (url, d) in enumerate(zip(ports, directions, strict=True))]
        self.demuxes = [SerialDemux(SERIAL_LINK, d) for d in directions]
        self._checked = len(ports) == 1  # two ports: directions confirmed by a frame yet?
        self._disconnecting = False

    def describe(self) -> str:
        ports = " and ".join(r.url for r in self.readers)
        mode = "Y-tap" if len(self.readers) == 2 else "half-duplex"
        return f"sniffing serial {ports} ({mode}) at {self.readers[0].settings}"

    def open(self) -> None:
        """Open the ports (an error names the port) and the capture file."""
        try:
            for reader in self.readers:
                reader.port = open_serial(reader.url, reader.settings)
            self.open_capture()
        except LiveError:
            for reader in self.readers:
                reader.close()
            raise

    def run(self, duration: float | None = None) -> None:
        if self.capture is None:
            self.open()
        for reader in self.readers:
            self._spawn(reader.run)
        try:
            for item in self._items(duration):
                if isinstance(item, Chunk):
                    self._items_of(item.port, self.demuxes[item.port].feed(
                        item.data, item.frame_no, item.time))
                elif isinstance(item, Silence):
                    self._items_of(item.port, self.demuxes[item.port].silence())
                elif isinstance(item, Finding) and self.dissection is not None:
                    self.dissection.process(item)
            for port, demux in enumerate(self.demuxes):
                self._items_of(port, demux.flush())
            if self.dissection is not None:
                self.dissection.finish()
        finally:
            self._shutdown()

    def _items_of(self, port: int, items: list[Pdu | Finding]) -> None:
        """What the demultiplexer of a port gave: followed (baud rate, disconnect) and
        dissected."""
        for item in items:
            if isinstance(item, Pdu):
                if item.transport == "hdlc":
                    item.direction = self._direction(port, item.data)
                    self._watch(item.data)
                elif item.transport == "mode-e":
                    self._follow(item.data)
            if self.dissection is not None:
                self.dissection.process(item)

    def _direction(self, port: int, frame: bytes) -> Direction:
        """One port: left to the analysis (the frame's bytes, address pairs seen before). Two
        ports: the port's, after the first frame that tells has confirmed or swapped them."""
        if len(self.readers) == 1:
            return UNKNOWN
        header = parse_header(frame)
        seen = header_direction(header, frame) or address_direction(header) \
            if header is not None else None
        if not self._checked and seen is not None and fcs_ok(frame):
            self._checked = True
            if seen != self.readers[port].direction:
                for reader in self.readers:
                    reader.direction = reverse(reader.direction)
                for demux, reader in zip(self.demuxes, self.readers, strict=True):
                    demux.direction = reader.direction
                self.note("warning", "serial.ports-swapped",
                          f"{self.readers[port].url} carries what the {seen.split('->')[0]} "
                          f"sends: the two ports are taken the other way round (records "
                          f"captured before this frame keep the command-line order)",
                          SERIAL_LINK)
        return self.readers[port].direction

    def _follow(self, message: bytes) -> None:
        """An acknowledgement selects a baud rate (8N1 for HDLC): switch the ports to it."""
        packet = ModeE(message)
        if not isinstance(packet, ModeEAck):
            return
        rate = baud_rate(bytes(packet.baud or b"").decode("latin-1"))
        if rate is None:
            return
        current = self.readers[0].settings
        if packet.hdlc:
            new = SerialSettings(rate, 8, "N", 1, self.settings.gap)
        else:
            new = replace(current, baud=rate)
        for reader in self.readers:
            reader.change(new)

    def _watch(self, frame: bytes) -> None:
        """With `sign_on`: after DISC and its UA/DM the meter is back at the sign-on speed."""
        if not self.sign_on:
            return
        header = parse_header(frame)
        kind = header.kind if header is not None else "unknown"
        if kind == "DISC":
            self._disconnecting = True
        elif self._disconnecting and kind in ("UA", "DM"):
            self._disconnecting = False
            for reader in self.readers:
                reader.change(replace(SIGN_ON_SETTINGS, gap=self.settings.gap))
