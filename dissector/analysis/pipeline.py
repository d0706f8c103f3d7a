"""PDUs -> dissected, deciphered APDU records: HDLC, M-Bus and block reassembly, keys per link,
association tracking; link messages without an APDU become records of their own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import ClassVar

from scapy.packet import Packet, Raw

from dissector.analysis.directions import DirectionLearner
from dissector.analysis.fastpath import FastView, dissect_fast
from dissector.analysis.fold import FindingFold
from dissector.analysis.reassembly import (
    Assembled,
    BlockReassembler,
    HdlcReassembler,
    MbusReassembler,
)
from dissector.analysis.record import ApduRecord
from dissector.analysis.tracker import Tracker
from dissector.stages import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    UNKNOWN,
    Direction,
    Item,
    LinkEvent,
    Pdu,
)
from keys.context import REQUEST_TAGS, KeyContext
from keys.keystore import Keystore
from layers.apdu.base import APDU, CIPHERED_TAGS
from layers.expert import Finding, add_finding, own_findings
from layers.fastapdu import FastApdu
from layers.fasthdlc import decode_frame
from layers.hdlc import HDLC, LLC
from layers.hdlc_bytes import clean_frame, control_kind, decode_address, parse_header
from layers.iec62056_21 import ModeE
from layers.mbus import MBus, mbus_segment
from layers.wrapper import Wrapper

WRAPPER_HEADER = 8  # version, source and destination wPort, length

#: Links whose state is kept at once (TCP connections, HDLC address pairs, UDP peers).
MAX_LINKS = 1024

#: Tags sent by servers on their own initiative (pushes) or as answers.
SERVER_TAGS = frozenset({0x08, 0x0C, 0x0D, 0x0E, 0x0F, 0x18, 0x61, 0x63, 0xC2, 0xC4, 0xC5,
                         0xC7, 0xD8, 0xDA, 0xE7})
#: Who sends each IEC 62056-21 sign-on message.
SIGN_ON_DIRECTIONS: dict[str, Direction] = {"sign-on": CLIENT_TO_SERVER,
                                            "acknowledge": CLIENT_TO_SERVER,
                                            "identification": SERVER_TO_CLIENT}
MBUS_RECORD_NAMES = {"MBusAck": "mbus-ack", "MBusShortFrame": "mbus-short-frame",
                     "MBusLongFrame": "mbus-long-frame"}


def direction_of_tag(tag: int) -> Direction:
    """Direction an APDU tag implies (requests go client->server), or unknown."""
    plain = next((p for p, pair in CIPHERED_TAGS.items() if tag in pair), tag)
    if plain in REQUEST_TAGS:
        return CLIENT_TO_SERVER
    if plain in SERVER_TAGS:
        return SERVER_TO_CLIENT
    return UNKNOWN


class Dissector:
    """Stateful dissection of a conversation: reassembly, keys, association tracking.

    `process(item)` takes what the framing gives (PDUs, link events, findings left at the end
    of the input) and yields the records; `finish()` ends the input.
    """

    #: Whether APDUs go through the fast path (`analysis.fastpath`) where it reads them; off,
    #: every APDU is dissected as Packets (the reference the fast path is tested against).
    FAST_PATH: ClassVar[bool] = True

    def __init__(self, keystore: Keystore | None = None, keep_stats: bool = True,
                 fast: bool | None = None) -> None:
        self.keystore = keystore or Keystore([])
        self.fast = self.FAST_PATH if fast is None else fast
        self.keep_stats = keep_stats
        self.contexts: dict[str, KeyContext] = {}
        self.tracker = Tracker(self.keystore)
        self.tracker.keep_summaries = keep_stats
        self.hdlc = HdlcReassembler()
        self.blocks = BlockReassembler()
        self.mbus = MbusReassembler()
        self.directions = DirectionLearner()
        self.notes = FindingFold()  # findings shown after the last APDU, with their positions
        self.count = 0

    @property
    def position(self) -> int:
        """Index in the capture of the unit being fed (set by whoever feeds units), which
        places end-of-input findings and association summaries as a serial run would."""
        return self.tracker.position

    @position.setter
    def position(self, value: int) -> None:
        self.tracker.position = value

    def process(self, item: Item) -> Iterator[ApduRecord]:
        """One item of the framing stage: a PDU is dissected, a link that closes ends its
        associations, a finding left over at the end of the input is kept for `finish`."""
        if isinstance(item, Pdu):
            return self.feed(item)
        if isinstance(item, LinkEvent):
            if item.kind == "close":
                self.close(item.link)
        elif isinstance(item, Finding):
            self.add_notes([item])
        return iter(())

    def context(self, link: str) -> KeyContext:
        ctx = self.contexts.get(link)
        if ctx is None:
            if len(self.contexts) >= MAX_LINKS:
                self._evict()
            ctx = self.contexts[link] = KeyContext(self.keystore)
            ctx.association = self.tracker.get(link).keys
        return ctx

    def _evict(self) -> None:
        """Too many links at once (an address flood): forget the oldest quarter."""
        for name in list(self.contexts)[: MAX_LINKS // 4]:
            del self.contexts[name]
            self.tracker.forget(name, keep_summary=self.keep_stats)
        self.add_notes([Finding(
            "warning", "state.links-evicted",
            f"more than {MAX_LINKS} links at once: the state of the oldest was dropped")])

    def close(self, link: str) -> list[Finding]:
        """The link closed (TCP FIN/RST): its associations end and their state is freed (kept
        as a summary for --stats when `keep_stats`); pending segments are dropped."""
        for name in [n for n in self.tracker.associations if n == link or
                     n.startswith(link + " ")]:
            self.tracker.close(name)
            self.tracker.forget(name, keep_summary=self.keep_stats)
            self.contexts.pop(name, None)
        self.directions.forget(link)
        return self.hdlc.drop(link)

    def finish(self) -> list[Finding]:
        """End of input: what never completed (HDLC segments, block transfers, M-Bus)."""
        return [f for _, f in self.finish_ranked()]

    def finish_ranked(self) -> list[tuple[tuple[int, int], Finding]]:
        """`finish` with each finding's place in a serial run: notes by the position of their
        unit, then incomplete HDLC segments, then incomplete block transfers, each by first
        frame. Sorting merges the findings of several dissectors into the serial order."""
        self.add_notes(self.mbus.finish())
        out = [((0, pos), f) for pos, f in self.notes.take()]
        hdlc = sorted(self.hdlc.pending.items(), key=lambda kv: kv[1].frames[:1])
        out += [((1, p.frames[0] if p.frames else 0), Finding(
            "warning", "hdlc.incomplete", f"{k[0]}: segmented APDU never completed (frames"
            f" {','.join(map(str, p.frames))})")) for k, p in hdlc]
        blocks = sorted(self.blocks.pending.items(), key=lambda kv: kv[1][1].frames[:1])
        out += [((2, p.frames[0] if p.frames else 0), Finding(
            "warning", "gbt.incomplete", f"{k[0]}: general-block-transfer never reached its"
            f" last block (frames {','.join(map(str, p.frames))})")) for k, (_, p) in blocks]
        self.hdlc.pending.clear()
        self.blocks.pending.clear()
        return out

    def add_notes(self, findings: list[Finding]) -> None:
        """Findings about the input, shown after the last APDU (past a bound, counted per
        code: `fold.FindingFold`)."""
        for finding in findings:
            self.notes.add(finding, self.position)

    # -- per transport ------------------------------------------------------------------
    def feed(self, pdu: Pdu) -> Iterator[ApduRecord]:
        """Dissect one transport PDU; its findings ride on the first record it gives."""
        transport = pdu.transport
        if transport == "hdlc":
            yield from self._hdlc(pdu)
        elif transport == "wrapper":
            data = pdu.data
            if not pdu.findings and wrapper_clean(data):  # its Packet only when asked for
                yield from self._apdu(pdu, data[WRAPPER_HEADER:], pdu.link, pdu.direction,
                                      lambda: [_wrapper_frame(pdu)], "wrapper")
                return
            frame = _wrapper_frame(pdu)
            yield from self._apdu(pdu, _payload_bytes(frame), pdu.link, pdu.direction, [frame],
                                  "wrapper")
        elif transport == "mbus":
            yield from self._mbus(pdu)
        elif transport == "mode-e":
            packet = ModeE(pdu.data)
            kind = getattr(type(packet), "kind", "")
            direction = pdu.direction if pdu.direction != UNKNOWN \
                else SIGN_ON_DIRECTIONS.get(kind, UNKNOWN)
            yield self._link_record(packet, f"mode-e-{kind}", pdu, pdu.link, direction,
                                    list(pdu.findings))
        else:
            yield from self._apdu(pdu, pdu.data, pdu.link, pdu.direction, [], "raw")

    def _hdlc(self, pdu: Pdu) -> Iterator[ApduRecord]:
        data = pdu.data
        head = clean_frame(data) if not pdu.findings else None
        frame: Packet | None = None
        fast = None  # a frame without an information field, read without its Packet
        if head is None and not pdu.findings and self.FAST_PATH:
            fast = decode_frame(data)
            head = parse_header(data) if fast is not None else None
        if head is not None:  # its Packet only when asked for (or given a finding)
            dst, src, control = head.destination, head.source, head.control
            raw_info, segmented, fcs_bad = data[head.info:-3], bool(data[1] & 0x08), False
        else:
            frame = _hdlc_frame(pdu)
            dst, src = bytes(frame.destination or b""), bytes(frame.source or b"")
            control = frame.control or 0
            info = frame.fields.get("information")
            raw_info = bytes(info) if info is not None else b""
            segmented, fcs_bad = bool(frame.segmentation), frame.fcs_verified is False
        kind = control_kind(control)
        direction = pdu.direction
        if direction == UNKNOWN:
            direction = self.directions.direction(pdu.link, data)
        client, server = (src, dst) if direction != SERVER_TO_CLIENT else (dst, src)
        pair = f"hdlc {_addr(client)}-{_addr(server)}"
        link = pair if pdu.link == "input" else f"{pdu.link} {pair}"
        if kind in ("DISC", "DM"):
            self.tracker.close(link)
            self.hdlc.drop(link)
        if kind not in ("I", "UI") or not raw_info or fcs_bad:
            yield self._frame_only(pdu, frame, link, direction, fast)
            return
        done = self.hdlc.feed((link, src, dst), raw_info, segmented,
                              pdu.frames[0] if pdu.frames else 0)
        if done is None:
            return
        if done.findings and frame is None:
            frame = _hdlc_frame(pdu)
        for f in done.findings:
            add_finding(frame, f.severity, f.code, f.message)
        if not done.data:  # dropped (a segment flood): the frame carries the finding
            yield self._frame_only(pdu, frame or _hdlc_frame(pdu), link, direction)
            return
        frames: list[Packet] | Callable[[], list[Packet]] = \
            [frame] if frame is not None else lambda: [_hdlc_frame(pdu)]
        yield from self._apdu(pdu, done.data, link, direction, frames, "hdlc",
                              frames=sorted(set(done.frames) | set(pdu.frames)))

    def _mbus(self, pdu: Pdu) -> Iterator[ApduRecord]:
        """An M-Bus frame: a DLMS segment is joined with the others of its APDU; any other
        frame (ACK, short frame, another CI, a bad check sum) is a record of its own."""
        packet = MBus(pdu.data)
        seg = mbus_segment(packet)
        if seg is None or packet.checksum_ok is False:
            name = MBUS_RECORD_NAMES.get(type(packet).__name__, "mbus-frame")
            yield self._link_record(packet, name, pdu, pdu.link, pdu.direction,
                                    list(pdu.findings))
            return
        link = f"mbus {seg.address}" if pdu.link == "input" else f"{pdu.link} mbus {seg.address}"
        done, lost = self.mbus.feed(pdu.link, seg, pdu.frames, own_findings(packet))
        notes = pdu.findings + lost
        if done is None or not done.data:
            self.add_notes(notes)
            return
        yield from self._apdu(Pdu(done.data, "raw", done.frames, pdu.time, link, pdu.direction,
                                  notes + done.findings), done.data, link, pdu.direction, [],
                              "raw")

    def _link_record(self, packet: Packet, name: str, pdu: Pdu, link: str, direction: str,
                     findings: list[Finding]) -> ApduRecord:
        """A link-layer message without an APDU (M-Bus ACK, mode E sign-on): a record of its
        own, named `name` (`mbus-ack`, `mode-e-identification`, ...)."""
        self.count += 1
        return ApduRecord(self.count, pdu.frames, pdu.time, link, direction, packet, "link",
                          findings=findings, name=name)

    def _frame_only(self, pdu: Pdu, frame: Packet | None, link: str, direction: str,
                    fast: FastApdu | None = None) -> ApduRecord:
        """An HDLC frame with no APDU (SNRM, UA, RR, DISC, DM, FRMR): a record of its own;
        read without its Packet (`layers.fasthdlc`) when `frame` was not built and it can be."""
        self.count += 1
        if frame is None and fast is None and self.FAST_PATH:
            fast = decode_frame(pdu.data)
        if frame is None and fast is not None:
            view = FastView(pdu.data, fast, None, lambda: _hdlc_frame(pdu))
            return ApduRecord(self.count, pdu.frames, pdu.time, link, direction, None, "hdlc",
                              fast=view)
        return ApduRecord(self.count, pdu.frames, pdu.time, link, direction,
                          frame or _hdlc_frame(pdu), "hdlc")

    def _apdu(self, pdu: Pdu, data: bytes, link: str, direction: str,
              frame_packets: list[Packet] | Callable[[], list[Packet]], transport: str,
              frames: list[int] | None = None, nested: bool = False) -> Iterator[ApduRecord]:
        if not data:
            return
        if direction == UNKNOWN:
            direction = direction_of_tag(data[0])
        ctx = self.context(link)
        ctx.direction = direction
        st = self.tracker.get(link)
        ctx.association = st.keys
        fast = dissect_fast(data, ctx) if self.fast else None
        view = fast if isinstance(fast, FastView) else None
        pkt = APDU(data, key_context=ctx) if fast is None else None if view else fast
        self.count += 1
        rec = ApduRecord(self.count, frames or pdu.frames, pdu.time, link, direction, pkt,
                         transport, frame_packets, fast=view)
        if direction == UNKNOWN:
            plain = rec.plaintext()
            if plain and rec.inner_name() is not None:
                rec.direction = direction_of_tag(plain[0])
        if transport == "raw":
            rec.findings.extend(pdu.findings)
        self.tracker.observe(rec, st)
        joined = None
        if rec.apdu == "general-block-transfer":
            if nested:
                rec.findings.append(Finding("error", "gbt.nested",
                                            "a general-block-transfer inside the joined blocks"
                                            " of another: not joined again"))
            else:
                joined = self._block(rec, link, direction)
        yield rec
        if joined is not None:
            for inner in self._apdu(pdu, joined.data, link, direction, frame_packets,
                                    transport, frames=joined.frames, nested=True):
                inner.findings.append(Finding(
                    "note", "gbt.reassembled", "reassembled from general-block-transfer blocks"
                    f" in frames {','.join(map(str, joined.frames))}"))
                yield inner

    def _block(self, rec: ApduRecord, link: str, direction: str) -> Assembled | None:
        """Feed a general-block-transfer block (its findings go on its own record); the joined
        APDU when the last block arrives."""
        gbt = rec.packet
        data = bytes(gbt.block_data or b"")
        if not data and not gbt.last_block:
            return None
        done, found = self.blocks.feed((link, direction), int(gbt.block_number),
                                       bool(gbt.last_block), data, rec.frames)
        rec.findings.extend(found)
        return done if done is not None and done.data else None


def wrapper_clean(data: bytes) -> bool:
    """Whether a wrapper PDU dissects without a finding: version 1, length as carried."""
    return len(data) > WRAPPER_HEADER and data[0] == 0 and data[1] == 1 and \
        int.from_bytes(data[6:8], "big") == len(data) - WRAPPER_HEADER


def _hdlc_frame(pdu: Pdu) -> Packet:
    frame = HDLC(pdu.data, stop_dissection_after=LLC)
    for f in pdu.findings:
        add_finding(frame, f.severity, f.code, f.message)
    return frame


def _wrapper_frame(pdu: Pdu) -> Packet:
    frame = Wrapper(pdu.data, stop_dissection_after=Wrapper)
    for f in pdu.findings:
        add_finding(frame, f.severity, f.code, f.message)
    return frame


def _payload_bytes(frame: Packet) -> bytes:
    """The bytes after a layer dissected with `stop_dissection_after` (Raw, then any Padding),
    read from the loads rather than rebuilt."""
    out = []
    layer = frame.payload
    while isinstance(layer, Raw):  # Padding is a Raw
        out.append(layer.load)
        layer = layer.payload
    if layer:
        out.append(bytes(layer))
    return b"".join(out)


def _addr(raw: bytes) -> str:
    upper, lower = decode_address(raw) if raw else (0, None)
    return str(upper) if lower is None else f"{upper}/{lower}"
