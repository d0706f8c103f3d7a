"""The serial line demultiplexer, shared by `read` (link type 147), `decode` and `sniff serial`.

One byte stream of a serial line (an optical probe, an RS-485 bus, one side of a Y-tap) carries
IEC 62056-21 mode E sign-on messages (`/?...!`, the meter's identification, the
acknowledgement that selects a baud rate and HDLC), then HDLC frames, or wired M-Bus frames.
A sign-on message is recognised wherever no frame is open, so a line that goes back to
sign-on after a disconnect is followed too. Binary framing is HDLC unless the first binary
bytes are M-Bus.
"""

from __future__ import annotations

from dataclasses import replace

from dissector.framing.hdlc import HdlcSplitter
from dissector.framing.mbus import MbusSplitter, looks_like_mbus
from dissector.framing.splitter import Splitter
from dissector.stages import SERIAL_LINK, UNKNOWN, Direction, Pdu
from layers.expert import Finding
from layers.hdlc_bytes import FLAG
from layers.iec62056_21 import ACK, message_length


class SerialDemux:
    """Cuts a serial byte stream into sign-on messages (`Pdu` transport "mode-e"), HDLC or
    M-Bus frames, with the splitters' findings, in line order; link and direction are set on
    everything it gives."""

    def __init__(self, link: str = SERIAL_LINK, direction: Direction = UNKNOWN) -> None:
        self.link = link
        self.direction = direction
        self.binary: Splitter | None = None
        self._idle = True  # no binary frame open (nothing but flags buffered)
        self._text = b""  # a sign-on message begun and not complete yet
        self._text_frames: list[int] = []
        self._text_time = 0.0
        self._signing_on = False  # a sign-on message came last (no binary frame since)

    def feed(self, data: bytes, frame_no: int = 0, time: float = 0.0) -> list[Pdu | Finding]:
        """Bytes carried by capture frame (or serial read, or pasted line) `frame_no`."""
        out: list[Pdu | Finding] = []
        frames, started = [frame_no], time  # of a sign-on message beginning in this data
        if self._text:
            data, frames, started = (self._text + data, [*self._text_frames, frame_no],
                                     self._text_time)
            self._text = b""
        pos, n = 0, len(data)
        while pos < n:
            nxt = min((i for i in (data.find(b"/", pos), data.find(ACK, pos)) if i >= 0),
                      default=n)
            if nxt > pos:
                self._binary(data[pos:nxt], frame_no, time, out)
                pos = nxt
                continue
            length = message_length(data, pos) if self._idle else None
            if length == 0:
                self._text, self._text_frames, self._text_time = data[pos:], frames, started
                break
            if length:
                if self.binary is not None:  # noise before the message is said before it
                    out.extend(self.binary.skipped())
                out.append(Pdu(data[pos:pos + length], "mode-e", frames, started, self.link,
                               self.direction))
                frames, started = [frame_no], time
                pos += length
                continue
            self._binary(data[pos:pos + 1], frame_no, time, out)
            pos += 1
        return self._located(out)

    def silence(self) -> list[Pdu | Finding]:
        """The line went quiet: an unfinished sign-on message is noise, an open frame is cut
        (the next one must pass its check sequence)."""
        out: list[Pdu | Finding] = []
        if self._text:
            text, self._text = self._text, b""
            self._binary(text, self._text_frames[-1], self._text_time, out)
        if not self._idle and self.binary is not None:
            out.extend(self.binary.interrupt())
            self._idle = True
        return self._located(out)

    def end_of_line(self) -> list[Pdu | Finding]:
        """Pasted input: the line is whole. A sign-on message it leaves open, and a frame it
        cuts short, are PDUs as they stand (their layers say what is missing)."""
        out: list[Pdu | Finding] = []
        if self._text:
            text, self._text = self._text, b""
            out.append(Pdu(text, "mode-e", self._text_frames, self._text_time))
        if self.binary is not None:
            out.extend(self.binary.rest())
        self._idle = True
        return self._located(out)

    def flush(self) -> list[Pdu | Finding]:
        """End of the stream."""
        out = self.silence()
        if self.binary is not None:
            out.extend(self._located(self.binary.flush()))
        return out

    def _binary(self, seg: bytes, frame_no: int, time: float,
                out: list[Pdu | Finding]) -> None:
        splitter = self.binary
        if splitter is None:
            splitter = self.binary = MbusSplitter() if looks_like_mbus(seg) else HdlcSplitter()
        out.extend(splitter.feed(seg, frame_no, time))
        trailing_flags = len(seg) - len(seg.rstrip(bytes([FLAG]))) \
            if splitter.transport == "hdlc" else 0
        self._idle = splitter.buffered <= trailing_flags

    def _located(self, items: list[Pdu | Finding]) -> list[Pdu | Finding]:
        """Link and direction set; bytes skipped around sign-on messages (before one, or
        after one and before any frame) are `mode-e.skipped-bytes`."""
        out: list[Pdu | Finding] = []
        for n, item in enumerate(items):
            if isinstance(item, Pdu):
                item.link, item.direction = self.link, self.direction
                self._signing_on = item.transport == "mode-e"
                out.append(item)
                continue
            after = items[n + 1] if n + 1 < len(items) else None
            code = item.code
            if code.endswith(".skipped-bytes") and (self._signing_on or (
                    isinstance(after, Pdu) and after.transport == "mode-e")):
                code = "mode-e.skipped-bytes"
            out.append(replace(item, code=code, link=self.link, direction=self.direction))
        return out
