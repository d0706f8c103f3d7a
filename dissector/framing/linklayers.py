"""Link layers in front of the pipeline: wired M-Bus, IEC 61334-4-32 LLC, IEC 62056-21 mode E.

They turn link-layer input into the `Unit`s that `Dissector.feed` takes, plus `LinkFrame`s
(link messages with no APDU, for display) and `FramingNote`s (skipped bytes, lost segments),
in input order. API:

- Detection of the first bytes of a stream, datagram or hex line: `looks_like_mbus`,
  `looks_like_llc432`, `looks_like_mode_e`. Check mode E and M-Bus before "raw": an
  acknowledgement starts with 06 (the write-request tag).
- `MbusFramer(link)`: `feed(data, frame_no, time)` with stream bytes (serial reads, capture
  records, hex lines: keep one framer per input so that segments on several lines join),
  `feed_frame(frame, frames, time)` with one frame already cut, `flush()` at the end. Frames
  with a DLMS CI (00..1F) are joined per A field and direction by `MbusReassembler`; each
  complete APDU comes out as `Unit(apdu, "raw", frames, time, "<link> mbus <A>")` carrying the
  frames' findings. Other frames (E5, short frames, other CIs, bad check sums) come out as
  `LinkFrame`s. `units_from_mbus(data, line_no)` does it for one self-contained line.
- `llc432_unit(data, frame_no)`: a datagram or line with a 4-32 LLC header -> a raw Unit of
  its APDU (the header's findings go with it).
- `ModeEFramer(link)`: a serial stream that opens with a mode E sign-on: the request,
  identification and acknowledgement come out as `LinkFrame`s (packet `layers.iec62056_21`),
  the HDLC frames after an acknowledgement that selects HDLC as `Unit(frame, "hdlc", ...)`.
  A chunk (serial read, record, line) that starts with a sign-on request ends the HDLC phase
  and starts a new sign-on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from scapy.packet import Packet

from dissector.analysis.pipeline import Unit
from dissector.analysis.reassembly import MAX_APDU, Assembled
from dissector.framing.splitter import FLAG, FramingNote, HdlcSplitter, Piece, _Splitter
from layers.expert import Finding
from layers.iec62056_21 import ACK as MODE_E_ACK
from layers.iec62056_21 import ModeE, looks_like_mode_e, message_length
from layers.llc432 import HEADER_LEN, LLC432, looks_like_llc432
from layers.mbus import (
    ACK,
    LONG_START,
    SHORT_START,
    DlmsSegment,
    MBus,
    frame_length,
    mbus_segment,
)

__all__ = ["Event", "LinkFrame", "MbusFramer", "MbusReassembler", "MbusSplitter",
           "ModeEFramer", "SignOnSplitter", "llc432_unit", "looks_like_llc432",
           "looks_like_mbus", "looks_like_mode_e", "units_from_mbus"]


@dataclass
class LinkFrame:
    """A link-layer message that carries no APDU of its own (M-Bus ACK, short frame, frame with
    another CI or a bad check sum; IEC 62056-21 sign-on message), for display."""

    packet: Packet
    frames: list[int]
    time: float
    link: str
    direction: str = "unknown"
    findings: list[Finding] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """`mbus` or the sign-on message kind (`sign-on`, `identification`, `acknowledge`)."""
        return getattr(type(self.packet), "kind", "mbus")


#: What the framers return, in input order.
Event = Unit | LinkFrame | FramingNote


def _own_findings(pkt: Packet) -> list[Finding]:
    """Findings of the packet itself (not of the APDU it may hold)."""
    return list(pkt.__dict__.get("findings", ()))


def _link_name(link: str, proto: str) -> str:
    return proto if link == "input" else f"{link} {proto}"


# -- M-Bus ----------------------------------------------------------------------------------
def looks_like_mbus(data: bytes) -> bool:
    """Whether the bytes start with an M-Bus frame: a complete short or long frame with valid
    check sum and stop byte, an ACK (E5) alone or in front of a frame, or the distinctive
    long-frame header ``68 L L 68`` of a frame cut short."""
    if not data:
        return False
    if data[0] == ACK:
        return len(data) == 1 or looks_like_mbus(data[1:])
    if data[0] not in (SHORT_START, LONG_START):
        return False
    n = frame_length(data)
    if n:
        return True
    return (n == 0 and data[0] == LONG_START and len(data) >= 4 and data[1] == data[2]
            and data[3] == LONG_START)


class MbusSplitter(_Splitter):
    """Incremental M-Bus frame splitter (ACK E5, short and long frames).

    In sync (at the start or right after a frame) a frame of the right shape is taken even with
    a bad check sum (the layer reports it); after noise a frame needs a valid check sum and a
    lone E5 is taken as noise.
    """

    skip_code = "mbus.skipped-bytes"
    unit = "M-Bus frame"

    def _scan(self, out: list[Piece | FramingNote], final: bool) -> None:
        buf = self._buf
        n = len(buf)
        p = 0
        while p < n:
            b = buf[p]
            if b not in (SHORT_START, LONG_START) and not (b == ACK and self._in_sync):
                q = min((i for i in (buf.find(SHORT_START, p + 1), buf.find(LONG_START, p + 1))
                         if i >= 0), default=n)
                self._skip(p, q, "noise")
                p = q
                continue
            length = frame_length(buf, p, strict=not self._in_sync, final=final)
            if length == 0 and not final:
                break
            if not length:
                self._skip(p, p + 1, "partial frame" if length == 0 else "noise")
                p += 1
                continue
            self._emit(p, p + length, out)
            p += length
        self._consume(p)


@dataclass
class _Pending:
    data: bytearray
    frames: list[int]
    next_sequence: int
    tsaps: tuple[int | None, int | None]
    findings: list[Finding]


class MbusReassembler:
    """Joins the DLMS segments of M-Bus long frames into APDUs.

    Frames of one APDU share the link, the A field and the direction (C bit PRM); segments are
    numbered from 0 (modulo 16) and the last has CI bit 4 set. A gap in the numbering drops the
    APDU (`mbus.segment-lost`); STSAP/DTSAP that change within an APDU are reported
    (`mbus.tsap-mismatch`) and the segment is joined anyway.
    """

    def __init__(self) -> None:
        self.pending: dict[tuple[str, int, bool], _Pending] = {}

    def feed(self, link: str, seg: DlmsSegment, frames: Sequence[int],
             findings: Sequence[Finding] = ()) -> tuple[Assembled | None, list[Finding]]:
        """Add one segment; returns (the APDU when complete, findings about lost segments)."""
        key = (link, *seg.key)
        where = ",".join(map(str, frames))
        lost: list[Finding] = []
        part = self.pending.get(key)
        if part is not None and seg.sequence != part.next_sequence:
            del self.pending[key]
            lost.append(Finding(
                "warning", "mbus.segment-lost",
                f"A={seg.address}: expected segment {part.next_sequence}, frame {where} brings"
                f" segment {seg.sequence}: the APDU of frames"
                f" {','.join(map(str, part.frames))} is dropped"))
            part = None
        if part is None:
            if seg.sequence != 0:
                lost.append(Finding(
                    "warning", "mbus.segment-lost",
                    f"A={seg.address}: segment {seg.sequence} in frame {where} without the"
                    f" segments before it: dropped"))
                return None, lost
            part = _Pending(bytearray(), [], 0, (seg.stsap, seg.dtsap), [])
        elif (seg.stsap, seg.dtsap) != part.tsaps:
            part.findings.append(Finding(
                "warning", "mbus.tsap-mismatch",
                f"segment {seg.sequence} (frame {where}) has STSAP/DTSAP"
                f" {_tsaps(seg.stsap, seg.dtsap)}, segment 0 had {_tsaps(*part.tsaps)}"))
        part.data += seg.data
        part.frames.extend(f for f in frames if f not in part.frames)
        part.findings.extend(f for f in findings if f not in part.findings)
        part.next_sequence = (seg.sequence + 1) & 0x0F
        if len(part.data) > MAX_APDU:
            self.pending.pop(key, None)
            lost.append(Finding("error", "mbus.segment-flood",
                                f"segmented APDU exceeds {MAX_APDU} bytes: segments dropped"))
            return None, lost
        if not seg.last:
            self.pending[key] = part
            return None, lost
        self.pending.pop(key, None)
        return Assembled(bytes(part.data), part.frames, part.findings), lost

    def finish(self) -> list[Finding]:
        """End of input: the APDUs whose last segment never came."""
        out = [Finding("warning", "mbus.incomplete",
                       f"{k[0]} A={k[1]}: segmented APDU never completed (frames"
                       f" {','.join(map(str, p.frames))})") for k, p in self.pending.items()]
        self.pending.clear()
        return out


def _tsaps(stsap: int | None, dtsap: int | None) -> str:
    return "absent" if stsap is None else f"{stsap}/{dtsap}"


def _note(finding: Finding, frames: list[int], time: float) -> FramingNote:
    severity: Literal["warning", "note"] = "note" if finding.severity == "note" else "warning"
    return FramingNote(0, frames, time, finding.code, finding.message, severity)


class MbusFramer:
    """M-Bus input -> raw APDU `Unit`s, `LinkFrame`s and `FramingNote`s, in input order."""

    def __init__(self, link: str = "input") -> None:
        self.link = link
        self.splitter = MbusSplitter()
        self.reassembler = MbusReassembler()

    def feed(self, data: bytes, frame_no: int = 0, time: float = 0.0) -> list[Event]:
        """Stream bytes carried by capture frame (or line) `frame_no`."""
        return self._pieces(self.splitter.feed(data, frame_no, time))

    def feed_frame(self, frame: bytes, frames: list[int], time: float = 0.0) -> list[Event]:
        """One complete frame, already cut (e.g. a `Piece` of an `MbusSplitter`)."""
        out: list[Event] = []
        packet = MBus(frame)
        seg = mbus_segment(packet)
        if seg is None or packet.checksum_ok is False:
            out.append(LinkFrame(packet, list(frames), time, self.link,
                                 findings=_own_findings(packet)))
            return out
        link = _link_name(self.link, f"mbus {seg.address}")
        done, lost = self.reassembler.feed(self.link, seg, frames, _own_findings(packet))
        out.extend(_note(f, list(frames), time) for f in lost)
        if done is not None and done.data:
            out.append(Unit(done.data, "raw", done.frames, time, link,
                            findings=list(done.findings)))
        return out

    def flush(self) -> list[Event]:
        """End of input: frames still buffered, then APDUs that never completed."""
        out = self._pieces(self.splitter.flush())
        out.extend(_note(f, [], 0.0) for f in self.reassembler.finish())
        return out

    def _pieces(self, pieces: list[Piece | FramingNote]) -> list[Event]:
        out: list[Event] = []
        for piece in pieces:
            if isinstance(piece, FramingNote):
                out.append(piece)
            else:
                out.extend(self.feed_frame(piece.data, piece.frames, piece.time))
        return out


def units_from_mbus(data: bytes, line_no: int) -> list[Unit]:
    """The APDUs of one self-contained input line of M-Bus frames, as raw Units; findings
    about lost segments and skipped bytes go with the first Unit (none: they are dropped)."""
    framer = MbusFramer()
    events = framer.feed(data, line_no) + framer.flush()
    units = [e for e in events if isinstance(e, Unit)]
    notes = [Finding(n.severity, n.code, n.message) for n in events
             if isinstance(n, FramingNote)]
    if units:
        units[0].findings[:0] = notes
    return units


# -- IEC 61334-4-32 LLC ---------------------------------------------------------------------
def llc432_unit(data: bytes, frame_no: int = 0, time: float = 0.0,
                link: str = "input") -> Unit:
    """A datagram or line with an IEC 61334-4-32 LLC header -> a raw Unit of its APDU."""
    header = LLC432(data, stop_dissection_after=LLC432)
    return Unit(data[HEADER_LEN:], "raw", [frame_no], time, link,
                findings=_own_findings(header))


# -- IEC 62056-21 mode E --------------------------------------------------------------------
class SignOnSplitter(_Splitter):
    """Cuts IEC 62056-21 sign-on messages; stops at an acknowledgement that selects HDLC or at
    a 7E flag (`switched` is then True and the bytes left belong to the HDLC phase)."""

    skip_code = "mode-e.skipped-bytes"
    unit = "sign-on message"

    def __init__(self) -> None:
        super().__init__()
        self.switched = False

    def _scan(self, out: list[Piece | FramingNote], final: bool) -> None:
        buf = self._buf
        n = len(buf)
        p = 0
        while p < n and not self.switched:
            if buf[p] == FLAG:
                self.switched = True
                break
            length = message_length(buf, p)
            if length == 0 and not final:
                break
            if not length:
                q = min((i for i in (buf.find(b"/", p + 1), buf.find(bytes([ACK]), p + 1),
                                     buf.find(bytes([FLAG]), p + 1)) if i >= 0), default=n)
                self._skip(p, q, "not a sign-on message")
                p = q
                continue
            selects_hdlc = buf[p] == MODE_E_ACK and buf[p + 1] == buf[p + 3] == ord("2")
            self._emit(p, p + length, out)
            p += length
            self.switched = selects_hdlc
        self._consume(p)

    def take_rest(self) -> bytes:
        """The bytes buffered after the switch (they go to the HDLC splitter)."""
        rest = bytes(self._buf)
        self._consume(len(self._buf))
        return rest


_SIGN_ON_DIRECTIONS = {"sign-on": "client->server", "acknowledge": "client->server",
                       "identification": "server->client"}


class ModeEFramer:
    """A serial stream with IEC 62056-21 mode E sign-on, then HDLC -> `LinkFrame`s for the
    sign-on messages and `Unit(frame, "hdlc", ...)` for the HDLC frames, in order."""

    def __init__(self, link: str = "input") -> None:
        self.link = link
        self.sign_on: SignOnSplitter | None = SignOnSplitter()
        self.hdlc = HdlcSplitter()

    @property
    def in_hdlc(self) -> bool:
        """Whether the stream is in its HDLC phase."""
        return self.sign_on is None

    def feed(self, data: bytes, frame_no: int = 0, time: float = 0.0) -> list[Event]:
        """Stream bytes carried by capture frame (or line, or serial read) `frame_no`."""
        out: list[Event] = []
        if self.sign_on is None and data[:2] == b"/?" and message_length(data) is not None:
            out.extend(self._hdlc_pieces(self.hdlc.flush()))
            self.sign_on = SignOnSplitter()
        if self.sign_on is None:
            out.extend(self._hdlc_pieces(self.hdlc.feed(data, frame_no, time)))
            return out
        out.extend(self._text_pieces(self.sign_on.feed(data, frame_no, time)))
        if self.sign_on.switched:
            rest = self.sign_on.take_rest()
            out.extend(self._text_pieces(self.sign_on.flush()))
            self.sign_on = None
            self.hdlc = HdlcSplitter()
            out.extend(self._hdlc_pieces(self.hdlc.feed(rest, frame_no, time)))
        return out

    def flush(self) -> list[Event]:
        """End of input."""
        if self.sign_on is not None:
            return self._text_pieces(self.sign_on.flush())
        return self._hdlc_pieces(self.hdlc.flush())

    def _text_pieces(self, pieces: list[Piece | FramingNote]) -> list[Event]:
        out: list[Event] = []
        for piece in pieces:
            if isinstance(piece, FramingNote):
                out.append(piece)
                continue
            packet = ModeE(piece.data)
            direction = _SIGN_ON_DIRECTIONS.get(getattr(type(packet), "kind", ""), "unknown")
            out.append(LinkFrame(packet, piece.frames, piece.time, self.link, direction,
                                 _own_findings(packet)))
        return out

    def _hdlc_pieces(self, pieces: list[Piece | FramingNote]) -> list[Event]:
        return [Unit(p.data, "hdlc", p.frames, p.time, self.link)
                if isinstance(p, Piece) else p for p in pieces]

