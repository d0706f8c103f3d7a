"""Live sources: serial taps (one or two ports), a TCP tap relay and passive TCP capture.

Every byte a source receives is first written to the raw capture (`RawCapture`: pcapng,
flushed per record; serial lines as link type 147 with direction flags, TCP as captured or,
for the tap, as the IP packets a sniffer on the wire would have seen) and only then queued for
dissection. Dissection is the `read` pipeline run one record at a time: the same framing, TCP
reassembly, keystore, association tracking and findings, and each APDU is written and flushed
as soon as it is complete. An adapter that disappears, a meter that drops the connection or
an interface that goes down becomes a finding and is retried with back-off.

Sources (all take a `LiveDissection`, or None to capture only, and a stop `threading.Event`):

- `SerialSniffer(ports, settings)`: one port (a half-duplex bus: directions from HDLC
  addresses and APDU kinds) or two ports (a Y-tap: the first port carries what the client
  sends, the second what the meter sends; swapped automatically when the frames say so).
  Records are cut at HDLC frame ends, sign-on line ends and silences; a silence longer than
  `SerialSettings.silence()` inside a frame ends it (line noise, a frame cut at start-up).
  IEC 62056-21 sign-on messages are shown as text and the baud rate an acknowledgement
  selects is followed.
- `TcpTap(listen, forward)`: relays bytes unchanged between clients and the meter and
  dissects both directions.
- `PassiveSniffer(iface, bpf, engine)`: sniffs an interface through Scapy or tshark (pyshark).

Each has `open()` (fails fast with `LiveError`), `run(duration=None)` (blocks until `stop()`,
the stop event or the duration) and `capture` (frames and bytes written).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import random
import select
import selectors
import shutil
import signal
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, TextIO

from dissector.analysis.capture import Close, feed
from dissector.analysis.pipeline import Dissector, Unit
from dissector.analysis.record import ApduRecord
from dissector.framing.linklayers import LinkFrame
from dissector.framing.splitter import FLAG, FramingNote, HdlcSplitter, Piece
from dissector.framing.streams import Pdu, hdlc_direction, pdus_from_records
from dissector.output.text import Writer
from dissector.sources.capture import LINKTYPE_USER0, SERIAL_LINK, FrameDecoder
from dissector.stages import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    UNKNOWN,
    Direction,
    LinkEvent,
    Note,
    Severity,
)
from layers.crc import crc16
from layers.expert import Finding
from layers.hdlc import control_kind
from layers.iec62056_21 import (
    ACK,
    ModeE,
    ModeEAck,
    baud_rate,
    describe_mode_e,
    message_length,
)

try:
    import termios

    #: What pyserial raises when a port fails or refuses settings.
    PORT_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, termios.error)
except ImportError:  # not POSIX
    PORT_ERRORS = (OSError, ValueError)

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
#: pcapng EPB direction flags as `read` interprets them on a serial link (taken at the client).
PCAPNG_FLAGS: dict[str, int] = {CLIENT_TO_SERVER: 2, SERVER_TO_CLIENT: 1}
POLL = 0.02  # serial read timeout: the resolution of silence detection
NET_POLL = 0.2  # socket and queue waits: how fast a stop is noticed
MAX_RECORD = 65535
MAX_SEGMENT = 32768  # payload per synthesised TCP segment
RECV_SIZE = 65536
#: Finding codes of the live machinery: printed at once, not attached to the next APDU.
LIVE_CODES = ("serial.", "tap.", "sniff.")
_SIGN_ON_STARTS = (ord("/"), ACK)
_SIGN_ON_DIRECTIONS: dict[str, Direction] = {"sign-on": CLIENT_TO_SERVER,
                                             "acknowledge": CLIENT_TO_SERVER,
                                             "identification": SERVER_TO_CLIENT}
#: First protocol of a tshark frame -> pcap link type (SLL is told from SLL2 by its bytes).
_TSHARK_LINKTYPES = {"eth": 1, "null": 0, "loop": 108, "raw": 101, "ip": 101, "ipv6": 101,
                     "sll": 113}


class LiveError(Exception):
    """A live source cannot start, or the capture file cannot be written (one line)."""


class Backoff:
    """Delays between retries: doubling from `first` up to `cap` seconds."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self.delay = first

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.delay = self.first


# -- raw capture --------------------------------------------------------------------------
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

    def record(self, data: bytes, when: float, make: Callable[[int], object], *,
               linktype: int, direction: int | None = None, ifname: str | None = None) -> int:
        """Write one record, then queue `make(frame_no)` for dissection; the frame number."""
        with self._lock:
            self.count += 1
            self.bytes += len(data)
            if self._writer is not None:
                self._write(data, when, linktype, direction, ifname)
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


# -- output -------------------------------------------------------------------------------
class LiveOutput:
    """APDUs as `read` prints them (summary, tree or JSON lines) and live events (sign-on
    messages, findings about the source), each flushed at once. JSON events carry an
    `event` key ("iec62056-21", "finding") instead of `apdu`."""

    def __init__(self, out: TextIO, mode: str = "summary",
                 keep: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self.writer = Writer(out, mode)
        self.mode = mode
        self.keep = keep
        self.count = 0

    def record(self, rec: ApduRecord) -> None:
        if self.keep is not None and not self.keep(rec.to_json()):
            return
        self.writer.write(rec)
        self.count += 1

    def note(self, note: Note) -> None:
        if self.mode == "json":
            obj = {"event": "finding", "frames": [note.frame_no] if note.frame_no else [],
                   "time": note.time, "link": note.link or None, "direction": note.direction,
                   "expert": [{"severity": note.severity, "code": note.code,
                               "message": note.message}]}
            self.writer.write_text(_json(obj))
        else:
            self.writer.write_text(f"{'-':>4} {note.time:17.6f} {note.direction:15s} "
                                   f"{note.link or '-'}  {note.severity}: {note.code}: "
                                   f"{note.message}\n")

    def link_frame(self, frame: LinkFrame) -> None:
        """An IEC 62056-21 sign-on message, shown as text."""
        info = describe_mode_e(frame.packet)
        text = bytes(frame.packet).decode("latin-1")
        if self.mode == "json":
            obj = {"event": "iec62056-21", "kind": frame.kind, "frames": frame.frames,
                   "time": frame.time, "link": frame.link, "direction": frame.direction,
                   "text": text, "info": info,
                   "expert": [f.as_dict() for f in frame.findings]}
            self.writer.write_text(_json(obj))
            return
        frames = ",".join(map(str, frame.frames)) or "-"
        lines = [f"{'-':>4} {frame.time:17.6f} {frame.direction:15s} {frame.link}  [{frames}]"
                 f"  iec62056-21 {frame.kind}  {text!r}: {info}"]
        if self.mode == "tree":
            shown = frame.packet.show(dump=True) or ""
            lines.extend("    " + line for line in shown.splitlines() if line.strip())
        lines.extend(f"       {f.severity}: {f.code}: {f.message}" for f in frame.findings)
        self.writer.write_text("\n".join(lines) + ("\n\n" if self.mode == "tree" else "\n"))

    def end(self, findings: list[Finding]) -> None:
        self.writer.end(findings)


def _json(obj: dict[str, Any]) -> str:
    import json

    return json.dumps(obj) + "\n"


class LiveDissection:
    """The `read` pipeline, fed one unit at a time: notes about framing ride on the next
    unit (as in `read`), notes about the source are printed at once."""

    def __init__(self, dissector: Dissector, output: LiveOutput) -> None:
        self.dissector = dissector
        self.output = output
        self._notes: list[Finding] = []

    def unit(self, unit: Unit) -> list[ApduRecord]:
        if self._notes:
            unit.findings = [*self._notes, *unit.findings]
            self._notes = []
        records = list(feed(self.dissector, unit))
        for rec in records:
            self.output.record(rec)
        return records

    def pdu(self, pdu: Pdu) -> list[ApduRecord]:
        return self.unit(Unit(pdu.data, pdu.transport, list(pdu.frames), pdu.time, pdu.link,
                              pdu.direction))

    def note(self, note: Note) -> None:
        if note.code.startswith(LIVE_CODES):
            self.output.note(note)
        else:
            self._notes.append(Finding(note.severity, note.code,
                                       f"frame {note.frame_no}: {note.message}"))

    def close(self, link: str) -> None:
        list(feed(self.dissector, Close(link)))

    def finish(self) -> None:
        self.output.end([*self._notes, *self.dissector.finish()])
        self._notes = []


# -- common machinery ---------------------------------------------------------------------
@dataclass(slots=True)
class _Chunk:
    """Bytes of one serial record."""

    port: int
    frame_no: int
    time: float
    data: bytes


@dataclass(slots=True)
class _Silence:
    """The line went quiet (or the port was lost): a frame still open is cut."""

    port: int


@dataclass(slots=True)
class _Frame:
    """One link-layer packet (captured, or synthesised by the tap)."""

    frame_no: int
    time: float
    linktype: int
    data: bytes


class _LiveSource:
    """Producer threads write records and queue them; `run` consumes the queue."""

    def __init__(self, dissection: LiveDissection | None, stop: threading.Event | None,
                 capture_path: str | None, linktype: int | None) -> None:
        self.dissection = dissection
        self.stop_event = stop or threading.Event()
        self.queue: queue.Queue[object] = queue.Queue()
        self.threads: list[threading.Thread] = []
        self.capture_path = capture_path
        self.linktype = linktype
        self.capture: RawCapture | None = None

    def stop(self) -> None:
        self.stop_event.set()

    def _open_capture(self) -> None:
        self.capture = RawCapture(self.capture_path, self.linktype, self.queue.put)

    def _note(self, severity: Severity, code: str, message: str, link: str = "",
              direction: Direction = UNKNOWN) -> None:
        frame_no = self.capture.count if self.capture is not None else 0
        self.queue.put(Note(frame_no, time.time(), link, severity, code, message, direction))

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=self._guard, args=(target, *args), daemon=True)
        self.threads = [*(t for t in self.threads if t.is_alive()), thread]
        thread.start()

    def _guard(self, target: Callable[..., None], *args: Any) -> None:
        """A capture file that cannot be written stops everything (nothing may be lost)."""
        try:
            target(*args)
        except LiveError as exc:
            self._note("error", "sniff.capture-failed", f"{exc}; stopping")
            self.stop_event.set()

    def _items(self, duration: float | None) -> Iterator[object]:
        """Queued items until stopped and every producer has finished; then what is left."""
        deadline = None if duration is None else time.monotonic() + duration
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                self.stop_event.set()
            try:
                item = self.queue.get(timeout=NET_POLL if self.stop_event.is_set() else POLL)
            except queue.Empty:
                if self.stop_event.is_set() and not any(t.is_alive() for t in self.threads):
                    break
                continue
            yield item
        while True:
            try:
                yield self.queue.get_nowait()
            except queue.Empty:
                return

    def _shutdown(self) -> None:
        self.stop_event.set()
        for thread in list(self.threads):
            thread.join(timeout=5)
        if self.capture is not None:
            self.capture.close()


# -- serial -------------------------------------------------------------------------------
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
        if buf[p + 1] & 0xF0 != 0xA0:
            q = buf.find(FLAG, p + 1)
            return max(q, 0)
        end = p + ((buf[p + 1] & 0x07) << 8 | buf[p + 2]) + 2
        return end if end <= n and buf[end - 1] == FLAG else 0
    if after_flag and first & 0xF0 == 0xA0 and n >= 2:
        end = ((first & 0x07) << 8 | buf[1]) + 1
        if end <= n and buf[end - 1] == FLAG:
            return end
    if first in _SIGN_ON_STARTS:
        q = buf.find(b"\r\n")
        return q + 2 if q >= 0 else 0
    return max(buf.find(FLAG), 0)


class _PortReader:
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
                    self._close()
        finally:
            self._close()

    def _close(self) -> None:
        if self.port is not None:
            with contextlib.suppress(OSError):
                self.port.close()
            self.port = None

    def _note(self, severity: Severity, code: str, message: str) -> None:
        self.source._note(severity, code, message, SERIAL_LINK, self.direction)

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
                    while (end := record_end(buf, after_flag)) > 0 or len(buf) >= MAX_RECORD:
                        end = end or len(buf)
                        after_flag = buf[end - 1] == FLAG
                        self._emit(bytes(buf[:end]), first)
                        del buf[:end]
                        first = wall
                elif active and now - last >= self.settings.silence():
                    self._emit(bytes(buf), first)
                    buf.clear()
                    active = False
                    self.source.queue.put(_Silence(self.index))
        finally:
            self._emit(bytes(buf), first)
            if active:
                self.source.queue.put(_Silence(self.index))

    def _emit(self, data: bytes, when: float) -> None:
        if not data or self.source.capture is None:
            return
        index = self.index
        self.source.capture.record(data, when, lambda n: _Chunk(index, n, when, data),
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


class SerialChannel:
    """The byte stream of one serial port: IEC 62056-21 sign-on lines (`LinkFrame`s) and HDLC
    frames (`Piece`s), with the splitter's notes (`FramingNote`s), in line order. A sign-on
    message is recognised where no HDLC frame is open."""

    def __init__(self, link: str = SERIAL_LINK) -> None:
        self.link = link
        self.hdlc = HdlcSplitter()
        self.learned: dict[tuple[bytes, bytes], Direction] = {}
        self._idle = True  # no HDLC frame open (nothing but flags buffered)
        self._text = b""
        self._text_frames: list[int] = []
        self._text_time = 0.0

    def feed(self, data: bytes, frame_no: int, when: float
             ) -> list[Piece | FramingNote | LinkFrame]:
        out: list[Piece | FramingNote | LinkFrame] = []
        frames, started = [frame_no], when  # of a sign-on line beginning in this data
        if self._text:
            data, frames, started = (self._text + data, [*self._text_frames, frame_no],
                                     self._text_time)
            self._text = b""
        pos, n = 0, len(data)
        while pos < n:
            nxt = min((i for i in (data.find(b"/", pos), data.find(b"\x06", pos)) if i >= 0),
                      default=n)
            if nxt > pos:
                self._feed_hdlc(data[pos:nxt], frame_no, when, out)
                pos = nxt
                continue
            length = message_length(data, pos) if self._idle else None
            if length == 0:
                self._text, self._text_frames, self._text_time = data[pos:], frames, started
                break
            if length:
                out.append(self._sign_on(data[pos:pos + length], frames, started))
                frames, started = [frame_no], when
                pos += length
                continue
            self._feed_hdlc(data[pos:pos + 1], frame_no, when, out)
            pos += 1
        return out

    def silence(self) -> list[Piece | FramingNote | LinkFrame]:
        """The line was quiet: an unfinished sign-on line is noise, an open frame is cut."""
        out: list[Piece | FramingNote | LinkFrame] = []
        if self._text:
            text, self._text = self._text, b""
            self._feed_hdlc(text, self._text_frames[-1], self._text_time, out)
        if not self._idle:
            out.extend(self.hdlc.interrupt())
            self._idle = True
        return out

    def flush(self) -> list[Piece | FramingNote | LinkFrame]:
        out = self.silence()
        out.extend(self.hdlc.flush())
        return out

    def _feed_hdlc(self, seg: bytes, frame_no: int, when: float,
                   out: list[Piece | FramingNote | LinkFrame]) -> None:
        out.extend(self.hdlc.feed(seg, frame_no, when))
        self._idle = self.hdlc.buffered <= len(seg) - len(seg.rstrip(b"\x7e"))

    def _sign_on(self, data: bytes, frames: list[int], when: float) -> LinkFrame:
        packet = ModeE(data)
        kind = getattr(type(packet), "kind", "")
        return LinkFrame(packet, frames, when, self.link, _SIGN_ON_DIRECTIONS.get(kind, UNKNOWN),
                         list(packet.__dict__.get("findings", ())))


def _fcs_ok(frame: bytes) -> bool:
    return len(frame) > 5 and crc16(frame[1:-3]) == frame[-3] | frame[-2] << 8


def _control(frame: bytes) -> int | None:
    """Control byte of an HDLC frame starting with its flag (after two addresses)."""
    p = 3
    for _ in range(2):
        start = p
        while p < len(frame) and not frame[p] & 1 and p - start < 3:
            p += 1
        p += 1
    return frame[p] if p < len(frame) else None


class SerialSniffer(_LiveSource):
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
        self.readers = [_PortReader(self, i, url, start, d)
                        for i, (url, d) in enumerate(zip(ports, directions, strict=True))]
        self.channels = [SerialChannel() for _ in ports]
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
            self._open_capture()
        except LiveError:
            for reader in self.readers:
                reader._close()
            raise

    def run(self, duration: float | None = None) -> None:
        if self.capture is None:
            self.open()
        for reader in self.readers:
            self._spawn(reader.run)
        try:
            for item in self._items(duration):
                if isinstance(item, _Chunk):
                    self._events(item.port, self.channels[item.port].feed(item.data,
                                                                           item.frame_no,
                                                                           item.time))
                elif isinstance(item, _Silence):
                    self._events(item.port, self.channels[item.port].silence())
                elif isinstance(item, Note) and self.dissection is not None:
                    self.dissection.note(item)
            for port, channel in enumerate(self.channels):
                self._events(port, channel.flush())
            if self.dissection is not None:
                self.dissection.finish()
        finally:
            self._shutdown()

    def _events(self, port: int, events: list[Piece | FramingNote | LinkFrame]) -> None:
        dissection = self.dissection
        fixed = self.readers[port].direction
        for ev in events:
            if isinstance(ev, Piece):
                direction = self._direction(port, ev.data)
                self._watch(ev.data)
                if dissection is not None:
                    dissection.unit(Unit(ev.data, "hdlc", ev.frames, ev.time, SERIAL_LINK,
                                         direction))
            elif isinstance(ev, FramingNote):
                if dissection is not None:
                    dissection.note(Note(ev.frames[0] if ev.frames else 0, ev.time,
                                         SERIAL_LINK, ev.severity, ev.code, ev.message,
                                         fixed))
            else:
                if fixed != UNKNOWN:
                    ev.direction = fixed
                self._follow(ev)
                if dissection is not None:
                    dissection.output.link_frame(ev)

    def _direction(self, port: int, frame: bytes) -> Direction:
        """One port: from the frame (addresses, kind, LLC, address pairs seen before). Two
        ports: the port's, after the first frame that tells has confirmed or swapped them."""
        channel = self.channels[port]
        seen = hdlc_direction(frame, channel.learned)
        if len(self.readers) == 1:
            return seen
        fixed = self.readers[port].direction
        if not self._checked and seen != UNKNOWN and _fcs_ok(frame):
            self._checked = True
            if seen != fixed:
                for reader in self.readers:
                    reader.direction = (SERVER_TO_CLIENT if reader.direction == CLIENT_TO_SERVER
                                        else CLIENT_TO_SERVER)
                self._note("warning", "serial.ports-swapped",
                           f"{self.readers[port].url} carries what the {seen.split('->')[0]} "
                           f"sends: the two ports are taken the other way round (records "
                           f"captured before this frame keep the command-line order)",
                           SERIAL_LINK)
        return self.readers[port].direction

    def _follow(self, frame: LinkFrame) -> None:
        """An acknowledgement selects a baud rate (8N1 for HDLC): switch the ports to it."""
        packet = frame.packet
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
        control = _control(frame)
        kind = control_kind(control) if control is not None else "unknown"
        if kind == "DISC":
            self._disconnecting = True
        elif self._disconnecting and kind in ("UA", "DM"):
            self._disconnecting = False
            for reader in self.readers:
                reader.change(replace(SIGN_ON_SETTINGS, gap=self.settings.gap))


# -- TCP: shared consumer -----------------------------------------------------------------
class _TcpSource(_LiveSource, ABC):
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
                if isinstance(item, _Frame):
                    yield from decoder.frame(item.frame_no, item.time, item.linktype, item.data,
                                             UNKNOWN, None)
                elif isinstance(item, Note):
                    yield item
            yield from decoder.finish()

        try:
            for item in pdus_from_records(records()):
                dissection = self.dissection
                if dissection is None:
                    continue
                if isinstance(item, LinkEvent):
                    if item.kind == "close":
                        dissection.close(item.link)
                elif isinstance(item, Note):
                    dissection.note(item)
                else:
                    dissection.pdu(item)
            if self.dissection is not None:
                self.dissection.finish()
        finally:
            self._shutdown()

    def _packet(self, data: bytes, when: float, linktype: int) -> None:
        assert self.capture is not None
        self.capture.record(data, when, lambda n: _Frame(n, when, linktype, data),
                            linktype=linktype)


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _v6(ip: str) -> str:
    return ip if ":" in ip else f"::ffff:{ip}"


class _SynthTcp:
    """The IP/TCP packets a sniffer between client and meter would have captured, for the
    bytes the tap relays (handshake, data, FIN, RST), with consistent sequence numbers."""

    def __init__(self, client: tuple[str, int], server: tuple[str, int]) -> None:
        self.v6 = ":" in client[0] or ":" in server[0]
        if self.v6:
            client, server = (_v6(client[0]), client[1]), (_v6(server[0]), server[1])
        self.ends = {True: client, False: server}
        self.seq = {True: random.getrandbits(32), False: random.getrandbits(32)}
        self.link = f"tcp {_endpoint(*client)}-{_endpoint(*server)}"

    def _build(self, from_client: bool, flags: str, payload: bytes = b"") -> bytes:
        from scapy.layers.inet import IP, TCP
        from scapy.layers.inet6 import IPv6

        (sip, sport), (dip, dport) = self.ends[from_client], self.ends[not from_client]
        ip = IPv6(src=sip, dst=dip) if self.v6 else IP(src=sip, dst=dip)
        ack = self.seq[not from_client] % (1 << 32) if "A" in flags else 0
        seg = TCP(sport=sport, dport=dport, seq=self.seq[from_client] % (1 << 32), ack=ack,
                  flags=flags, window=65535)
        pkt = ip / seg / payload if payload else ip / seg
        self.seq[from_client] += len(payload) + ("S" in flags or "F" in flags)
        return bytes(pkt)

    def handshake(self) -> list[bytes]:
        return [self._build(True, "S"), self._build(False, "SA"), self._build(True, "A")]

    def data(self, from_client: bool, data: bytes) -> list[bytes]:
        return [self._build(from_client, "PA", data[i:i + MAX_SEGMENT])
                for i in range(0, len(data), MAX_SEGMENT)]

    def fin(self, from_client: bool) -> bytes:
        return self._build(from_client, "FA")

    def rst(self, from_client: bool) -> bytes:
        return self._build(from_client, "RA")


class TcpTap(_TcpSource):
    """Active tap: accepts clients on `listen`, connects each to `forward` (retried with
    back-off for up to `connect_timeout` seconds), relays bytes unchanged both ways and
    dissects them; the capture holds them as IP packets (link type 101)."""

    def __init__(self, listen: tuple[str, int], forward: tuple[str, int], *,
                 dissection: LiveDissection | None = None, capture_path: str | None = None,
                 ports: dict[int, str | None] | None = None, stop: threading.Event | None = None,
                 connect_timeout: float = 10.0) -> None:
        super().__init__(dissection, stop, capture_path, LINKTYPE_RAW, ports)
        self.listen = listen
        self.forward = forward
        self.connect_timeout = connect_timeout
        self.address: tuple[str, int] | None = None
        self._listener: socket.socket | None = None
        self.ports.setdefault(forward[1], None)

    def describe(self) -> str:
        host, port = self.address or self.listen
        return (f"TCP tap listening on {_endpoint(host, port)}, forwarding to "
                f"{_endpoint(*self.forward)}")

    def open(self) -> tuple[str, int]:
        """Bind the listening socket; the address it got (port 0 picks a free one)."""
        try:
            sock = socket.create_server(self.listen)
        except OSError as exc:
            raise LiveError(f"cannot listen on {_endpoint(*self.listen)}: "
                            f"{exc.strerror or exc}") from None
        sock.settimeout(NET_POLL)
        self._listener = sock
        self.address = sock.getsockname()[:2]
        try:
            self._open_capture()
        except LiveError:
            sock.close()
            raise
        return self.address

    def _producers(self) -> None:
        self._spawn(self._accept)

    def _accept(self) -> None:
        assert self._listener is not None
        with self._listener:
            while not self.stop_event.is_set():
                try:
                    client, addr = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError as exc:
                    self._note("error", "tap.listen-failed", f"accept failed: {exc}; stopping")
                    self.stop_event.set()
                    return
                self._spawn(self._session, client, addr[:2])

    def _connect(self, client: tuple[str, int]) -> socket.socket | None:
        """Connect to the meter, retrying with back-off; None when it stays unreachable."""
        backoff = Backoff(0.1, 2.0)
        deadline = time.monotonic() + self.connect_timeout
        tries = 0
        link = f"tcp {_endpoint(*client)}-{_endpoint(*self.forward)}"
        while not self.stop_event.is_set():
            remaining = deadline - time.monotonic()
            try:
                sock = socket.create_connection(self.forward, timeout=max(0.1, min(5.0, remaining)))
            except OSError as exc:
                tries += 1
                delay = backoff.next()
                if time.monotonic() + delay >= deadline:
                    self._note("error", "tap.forward-failed",
                               f"cannot reach the meter at {_endpoint(*self.forward)} after "
                               f"{tries} tries ({exc.strerror or exc}); closing the client's "
                               f"connection", link)
                    return None
                if tries == 1:
                    self._note("warning", "tap.forward-retry",
                               f"cannot reach the meter at {_endpoint(*self.forward)} "
                               f"({exc.strerror or exc}); retrying with back-off for up to "
                               f"{self.connect_timeout:g} s", link)
                self.stop_event.wait(delay)
                continue
            sock.settimeout(None)
            if tries:
                self._note("note", "tap.forward-reconnected",
                           f"reached the meter at {_endpoint(*self.forward)} after {tries + 1} "
                           f"tries", link)
            return sock
        return None

    def _session(self, client: socket.socket, addr: tuple[str, int]) -> None:
        with client:
            upstream = self._connect(addr)
            if upstream is None:
                return
            with upstream:
                synth = _SynthTcp(addr, upstream.getpeername()[:2])
                for pkt in synth.handshake():
                    self._packet(pkt, time.time(), LINKTYPE_RAW)
                self._relay(client, upstream, synth)

    def _relay(self, client: socket.socket, upstream: socket.socket, synth: _SynthTcp) -> None:
        peers = {True: upstream, False: client}
        reading = {True, False}
        with selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ, True)
            sel.register(upstream, selectors.EVENT_READ, False)
            while reading and not self.stop_event.is_set():
                for key, _ in sel.select(NET_POLL):
                    from_client: bool = key.data
                    try:
                        data = key.fileobj.recv(RECV_SIZE)  # type: ignore[union-attr]
                    except OSError as exc:
                        self._reset(synth, from_client, exc)
                        return
                    if not data:
                        self._packet(synth.fin(from_client), time.time(), LINKTYPE_RAW)
                        sel.unregister(key.fileobj)
                        reading.discard(from_client)
                        if not from_client and True in reading:
                            self._note("warning", "tap.server-closed",
                                       f"the meter at {_endpoint(*self.forward)} closed the "
                                       "connection first; passing the close on to the client",
                                       synth.link)
                        with contextlib.suppress(OSError):
                            peers[from_client].shutdown(socket.SHUT_WR)
                        continue
                    now = time.time()
                    for pkt in synth.data(from_client, data):
                        self._packet(pkt, now, LINKTYPE_RAW)
                    try:
                        peers[from_client].sendall(data)
                    except OSError as exc:
                        self._reset(synth, not from_client, exc)
                        return

    def _reset(self, synth: _SynthTcp, from_client: bool, exc: OSError) -> None:
        self._packet(synth.rst(from_client), time.time(), LINKTYPE_RAW)
        who = "client" if from_client else f"meter at {_endpoint(*self.forward)}"
        self._note("warning", "tap.client-reset" if from_client else "tap.server-reset",
                   f"the {who} dropped the connection ({exc.strerror or exc}); the other "
                   "side is closed too", synth.link)


async def _terminate(procs: list[Any]) -> None:
    """Stop pyshark's dumpcap and tshark with SIGTERM (tshark then stops the dumpcap it runs
    itself; SIGKILL would orphan it) and wait for them; SIGKILL only if they hang."""
    for proc in procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), 3)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()


# -- TCP: passive capture -----------------------------------------------------------------
def tshark_path() -> str | None:
    """The tshark executable on PATH, or None."""
    return shutil.which("tshark")


class PassiveSniffer(_TcpSource):
    """Passive capture on an interface with a BPF filter, through Scapy (`engine="scapy"`)
    or tshark via pyshark (`engine="tshark"`); packets are kept as captured."""

    def __init__(self, iface: str, bpf: str, *, engine: str = "scapy",
                 dissection: LiveDissection | None = None, capture_path: str | None = None,
                 ports: dict[int, str | None] | None = None,
                 stop: threading.Event | None = None) -> None:
        if engine not in ("scapy", "tshark"):
            raise LiveError(f"unknown capture engine {engine!r} (scapy or tshark)")
        super().__init__(dissection, stop, capture_path, None, ports)
        self.iface = iface
        self.bpf = bpf
        self.engine = engine
        self._sock: Any = None
        self._sock_linktype = 0

    def describe(self) -> str:
        return f"sniffing {self.iface} with {self.engine} (filter {self.bpf!r})"

    def open(self) -> None:
        if self.engine == "scapy":
            self._sock, self._sock_linktype = self._scapy_socket()
        elif tshark_path() is None:
            raise LiveError("--engine tshark needs tshark (apt-get install tshark)")
        try:
            self._open_capture()
        except LiveError:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            raise

    def _scapy_socket(self) -> tuple[Any, int]:
        import scapy.arch  # sets conf.L2listen / conf.L2socket
        import scapy.layers.l2  # noqa: F401  (link-layer classes for the link type)
        from scapy.config import conf
        from scapy.error import Scapy_Exception

        # On a loopback interface each packet also shows as outgoing: a socket that can
        # send drops those copies, as libpcap does.
        opener = conf.L2socket if self.iface == conf.loopback_name else conf.L2listen
        try:
            sock = opener(iface=self.iface, filter=self.bpf)
        except PermissionError:
            raise LiveError(f"capturing on {self.iface} needs root or CAP_NET_RAW") from None
        except (OSError, Scapy_Exception, ValueError) as exc:
            raise LiveError(f"cannot capture on {self.iface}: {exc}") from None
        linktype = conf.l2types.layer2num.get(sock.LL)
        if linktype is None:
            sock.close()
            raise LiveError(f"{self.iface}: link layer {sock.LL.__name__} not supported")
        return sock, linktype

    def _producers(self) -> None:
        self._spawn(self._scapy_loop if self.engine == "scapy" else self._tshark_loop)

    def _scapy_loop(self) -> None:
        backoff = Backoff(0.5, 5.0)
        while not self.stop_event.is_set():
            if self._sock is None:
                try:
                    self._sock, self._sock_linktype = self._scapy_socket()
                except LiveError:
                    self.stop_event.wait(backoff.next())
                    continue
                backoff.reset()
                self._note("note", "sniff.reopened", f"capturing on {self.iface} again")
            try:
                self._scapy_read(self._sock, self._sock_linktype)
            except OSError as exc:
                self._note("warning", "sniff.interface-lost",
                           f"{self.iface}: {exc}; reopening with back-off")
            finally:
                with contextlib.suppress(OSError):
                    self._sock.close()
                self._sock = None

    def _scapy_read(self, sock: Any, linktype: int) -> None:
        while not self.stop_event.is_set():
            ready, _, _ = select.select([sock], [], [], NET_POLL)
            if not ready:
                continue
            _cls, data, ts = sock.recv_raw()
            if data:
                self._packet(data, float(ts or time.time()), linktype)

    def _tshark_loop(self) -> None:
        backoff = Backoff(0.5, 5.0)
        while not self.stop_event.is_set():
            error = self._tshark_once()
            if self.stop_event.is_set():
                return
            self._note("warning", "sniff.tshark-stopped",
                       f"tshark on {self.iface} stopped ({error or 'no reason given'}); "
                       "restarting with back-off")
            self.stop_event.wait(backoff.next())

    def _tshark_once(self) -> str | None:
        """Run one tshark capture until stopped; the reason if it ended by itself."""
        import pyshark

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        problems: list[str] = []
        try:
            cap = pyshark.LiveCapture(interface=self.iface, bpf_filter=self.bpf,
                                      use_json=True, include_raw=True, eventloop=loop)

            def packet(pkt: Any) -> None:
                try:
                    self._tshark_packet(pkt)
                except (AttributeError, KeyError, TypeError, ValueError) as exc:
                    if not problems:
                        self._note("warning", "sniff.unreadable",
                                   f"tshark gave a packet that cannot be used ({exc}); such "
                                   "packets are skipped")
                    problems.append(f"unreadable packet: {exc}")

            task = loop.create_task(cap.packets_from_tshark(packet))
            procs: list[Any] = []

            async def watch() -> None:
                while not self.stop_event.is_set() and not task.done():
                    procs[:] = getattr(cap, "_running_processes", ())  # dumpcap, tshark
                    await asyncio.sleep(NET_POLL)
                await _terminate(procs)
                task.cancel()

            results = loop.run_until_complete(asyncio.gather(task, watch(),
                                                             return_exceptions=True))
            loop.run_until_complete(asyncio.sleep(NET_POLL))  # pipe transports close
            first = results[0]
            if isinstance(first, BaseException) and not isinstance(first,
                                                                   asyncio.CancelledError):
                return " ".join(str(first).split()) or type(first).__name__
            return problems[-1] if problems else None
        except Exception as exc:  # noqa: BLE001 - pyshark raises its own exception types
            return " ".join(str(exc).split()) or type(exc).__name__
        finally:
            loop.close()

    def _tshark_packet(self, pkt: Any) -> None:
        """One pyshark packet (JSON with raw bytes) -> capture and queue."""
        data = bytes(pkt.get_raw_packet())
        first = str(pkt.frame_info.protocols).split(":")[0]
        linktype = _TSHARK_LINKTYPES.get(first)
        if linktype == 113 and len(data) >= 2 and int.from_bytes(data[:2], "big") >= 0x600:
            linktype = 276  # SLL2 starts with the protocol, SLL with a small packet type
        if linktype is None:
            raise ValueError(f"link layer {first!r} not supported")
        self._packet(data, float(pkt.sniff_timestamp), linktype)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` (the capture file is closed and `--stats` printed); a
    second SIGINT interrupts at once. Outside the main thread, nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
