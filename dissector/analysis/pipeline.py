"""From transport PDUs (HDLC frames, wrapper PDUs, bare APDUs) to dissected, deciphered APDUs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from scapy.packet import Packet, Raw

from dissector.analysis.reassembly import Assembled, BlockReassembler, HdlcReassembler
from dissector.analysis.record import ApduRecord
from dissector.analysis.tracker import Tracker
from keys.context import REQUEST_TAGS, KeyContext
from keys.keystore import Keystore
from layers.apdu.base import APDU
from layers.expert import Finding
from layers.hdlc import HDLC, LLC, LLC_RESPONSE, control_kind, decode_address
from layers.wrapper import Wrapper

#: Links whose state is kept at once (TCP connections, HDLC address pairs, UDP peers).
MAX_LINKS = 1024

#: Tags sent by servers on their own initiative (pushes) or as answers.
SERVER_TAGS = frozenset({0x08, 0x0C, 0x0D, 0x0E, 0x0F, 0x18, 0x61, 0x63, 0xC2, 0xC4, 0xC5,
                         0xC7, 0xD8, 0xDA, 0xE7})


@dataclass
class Unit:
    """One transport PDU to dissect: an HDLC frame, a wrapper PDU or a bare APDU."""

    data: bytes
    transport: str
    frames: list[int]
    time: float = 0.0
    link: str = "input"
    direction: str = "unknown"
    findings: list[Finding] = field(default_factory=list)


def direction_of_tag(tag: int) -> str:
    """Direction an APDU tag implies (requests go client->server), or unknown."""
    from layers.apdu.base import CIPHERED_TAGS

    plain = next((p for p, pair in CIPHERED_TAGS.items() if tag in pair), tag)
    if plain in REQUEST_TAGS:
        return "client->server"
    if plain in SERVER_TAGS:
        return "server->client"
    return "unknown"


class Dissector:
    """Stateful dissection of a conversation: reassembly, keys, association tracking."""

    def __init__(self, keystore: Keystore | None = None, keep_stats: bool = True) -> None:
        self.keystore = keystore or Keystore([])
        self.keep_stats = keep_stats
        self.contexts: dict[str, KeyContext] = {}
        self.tracker = Tracker(self.keystore)
        self.tracker.keep_summaries = keep_stats
        self.hdlc = HdlcReassembler()
        self.blocks = BlockReassembler()
        self.hdlc_directions: dict[tuple[str, bytes, bytes], str] = {}
        self.pending_notes: list[Finding] = []
        self.note_positions: list[int] = []  # position of each pending note's unit
        self.mbus: dict[str, Any] = {}
        self.count = 0

    @property
    def position(self) -> int:
        """Index in the capture of the unit being fed (set by whoever feeds units), which
        places end-of-input findings and association summaries as a serial run would."""
        return self.tracker.position

    @position.setter
    def position(self, value: int) -> None:
        self.tracker.position = value

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
        for key in [k for k in self.hdlc_directions if k[0] == link]:
            del self.hdlc_directions[key]
        return self.hdlc.drop(link)

    def finish(self) -> list[Finding]:
        """End of input: what never completed (HDLC segments, block transfers, M-Bus)."""
        return [f for _, f in self.finish_ranked()]

    def finish_ranked(self) -> list[tuple[tuple[int, int], Finding]]:
        """`finish` with each finding's place in a serial run: notes by the position of their
        unit, then incomplete HDLC segments, then incomplete block transfers, each by first
        frame. Sorting merges the findings of several dissectors into the serial order."""
        from dissector.framing.splitter import FramingNote

        for framer in self.mbus.values():
            self.add_notes([Finding(e.severity, e.code, e.message)
                        for e in framer.flush() if isinstance(e, FramingNote)])
        out = [((0, pos), f) for pos, f in zip(self.note_positions, self.pending_notes,
                                                strict=True)]
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
        self.pending_notes, self.note_positions = [], []
        return out

    def add_notes(self, findings: list[Finding]) -> None:
        """Findings about the input, shown after the last APDU."""
        self.pending_notes.extend(findings)
        self.note_positions.extend([self.position] * len(findings))

    # -- per transport ------------------------------------------------------------------
    def feed(self, unit: Unit) -> Iterator[ApduRecord]:
        if unit.transport == "hdlc":
            yield from self._hdlc(unit)
        elif unit.transport == "mbus":
            framer = self.mbus.get(unit.link)
            if framer is None:
                from dissector.framing.linklayers import MbusFramer

                framer = self.mbus[unit.link] = MbusFramer(unit.link)
            yield from self.events(framer.feed_frame(unit.data, unit.frames, unit.time),
                                   unit.findings)
        elif unit.transport == "wrapper":
            yield from self._wrapper(unit)
        else:
            yield from self._apdu(unit, unit.data, unit.link, unit.direction, [], "raw")

    def _hdlc(self, unit: Unit) -> Iterator[ApduRecord]:
        frame = HDLC(unit.data, stop_dissection_after=LLC)
        for f in unit.findings:
            frame.__dict__.setdefault("findings", []).append(f)
        dst, src = bytes(frame.destination or b""), bytes(frame.source or b"")
        kind = control_kind(frame.control or 0)
        direction = unit.direction
        info = frame.fields.get("information")
        raw_info = bytes(info) if info is not None else b""
        if direction == "unknown":
            pair = (unit.link, src, dst)
            direction = _hdlc_direction(kind, dst, src, raw_info, self.hdlc_directions.get(pair))
            if direction != "unknown":
                if len(self.hdlc_directions) > 4096:
                    self.hdlc_directions.clear()
                self.hdlc_directions[pair] = direction
                self.hdlc_directions[(unit.link, dst, src)] = _reverse(direction)
        client, server = (src, dst) if direction != "server->client" else (dst, src)
        link = f"{unit.link} hdlc {_addr(client)}-{_addr(server)}" if unit.link != "input" \
            else f"hdlc {_addr(client)}-{_addr(server)}"
        if kind in ("DISC", "DM"):
            self.tracker.close(link)
            self.hdlc.drop(link)
        if kind not in ("I", "UI") or not raw_info or frame.__dict__.get("fcs_ok") is False:
            yield self._frame_only(unit, frame, link, direction)
            return
        done = self.hdlc.feed((link, src, dst), raw_info, bool(frame.segmentation),
                              unit.frames[0] if unit.frames else 0)
        if done is None:
            return
        frame.__dict__.setdefault("findings", []).extend(done.findings)
        if not done.data:  # dropped (a segment flood): the frame carries the finding
            yield self._frame_only(unit, frame, link, direction)
            return
        yield from self._apdu(unit, done.data, link, direction, [frame], "hdlc",
                              frames=sorted(set(done.frames) | set(unit.frames)))

    def events(self, events: list[Any], findings: list[Finding] | None = None
               ) -> Iterator[ApduRecord]:
        """What a link-layer framer (M-Bus, mode E) gives: APDU units are dissected, link
        messages become records of their own, framing notes ride on the next record."""
        from dissector.framing.linklayers import LinkFrame
        from dissector.framing.splitter import FramingNote

        notes: list[Finding] = list(findings or [])
        for ev in events:
            if isinstance(ev, FramingNote):
                notes.append(Finding(ev.severity, ev.code, ev.message))
            elif isinstance(ev, LinkFrame):
                yield self.link_frame(ev.packet, _link_record_name(ev), ev.frames, ev.time,
                                      ev.link, ev.direction, ev.findings + notes)
                notes = []
            else:
                ev.findings[:0] = notes
                notes = []
                yield from self.feed(ev)
        self.add_notes(notes)

    def link_frame(self, packet: Packet, name: str, frames: list[int], time: float, link: str,
                   direction: str, findings: list[Finding]) -> ApduRecord:
        """A link-layer message without an APDU (M-Bus ACK, mode E sign-on): a record of its
        own, named `name` (`mbus-ack`, `mode-e-identification`, ...)."""
        self.count += 1
        return ApduRecord(self.count, frames, time, link, direction, packet, "link",
                          findings=list(findings), name=name)

    def _frame_only(self, unit: Unit, frame: Packet, link: str, direction: str) -> ApduRecord:
        """An HDLC frame with no APDU (SNRM, UA, RR, DISC, DM, FRMR): a record of its own."""
        self.count += 1
        rec = ApduRecord(self.count, unit.frames, unit.time, link, direction, frame, "hdlc",
                         [])
        return rec

    def _wrapper(self, unit: Unit) -> Iterator[ApduRecord]:
        frame = Wrapper(unit.data, stop_dissection_after=Wrapper)
        for f in unit.findings:
            frame.__dict__.setdefault("findings", []).append(f)
        yield from self._apdu(unit, _payload_bytes(frame), unit.link, unit.direction, [frame],
                              "wrapper")

    def _apdu(self, unit: Unit, data: bytes, link: str, direction: str,
              frame_packets: list[Packet], transport: str,
              frames: list[int] | None = None, nested: bool = False) -> Iterator[ApduRecord]:
        if not data:
            return
        if direction == "unknown":
            direction = direction_of_tag(data[0])
        ctx = self.context(link)
        ctx.direction = direction
        st = self.tracker.get(link)
        ctx.association = st.keys
        pkt = APDU(data, key_context=ctx)
        self.count += 1
        rec = ApduRecord(self.count, frames or unit.frames, unit.time, link, direction, pkt,
                         transport, frame_packets)
        if direction == "unknown" and rec.inner() is not None:
            rec.direction = direction_of_tag(bytes(rec.inner())[0])
        if transport == "raw":
            rec.findings.extend(unit.findings)
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
            for inner in self._apdu(unit, joined.data, link, direction, frame_packets,
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


def _reverse(direction: str) -> str:
    return {"client->server": "server->client", "server->client": "client->server"}.get(
        direction, direction)


def _hdlc_direction(kind: str, dst: bytes, src: bytes, info: bytes, known: str | None) -> str:
    """Direction of a frame: from its kind or LLC, else what this address pair had, else the
    address sizes (a client address is one byte)."""
    if kind in ("SNRM", "DISC"):
        return "client->server"
    if kind in ("UA", "DM", "FRMR"):
        return "server->client"
    if info[:3] == LLC_RESPONSE:
        return "server->client"
    if info[:2] == b"\xe6\xe6":
        return "client->server"
    if known is not None:
        return known
    if len(src) == 1 and len(dst) > 1:
        return "client->server"
    if len(dst) == 1 and len(src) > 1:
        return "server->client"
    return "unknown"


def _link_record_name(frame: Any) -> str:
    """`mbus-ack`, `mbus-short-frame`, `mbus-long-frame`, `mode-e-sign-on`, ..."""
    names = {"MBusAck": "mbus-ack", "MBusShortFrame": "mbus-short-frame",
             "MBusLongFrame": "mbus-long-frame"}
    kind = frame.kind
    return names.get(type(frame.packet).__name__, "mbus-frame") if kind == "mbus" \
        else f"mode-e-{kind}"
