"""`-w OUT.pcapng`: the annotated export, one packet per line of `read --json`.

An APDU's packet is Ethernet / IPv4 / UDP 4059 / IEC 62056-47 wrapper / the APDU, deciphered
when possible (an AARQ, AARE, RLRQ or RLRE whole, its user-information deciphered in place), so
that a Wireshark with a DLMS dissector of its own (UDP/TCP 4059) decodes the plaintext. Packet
comments carry what dlms-dissector found: for people, the record as `read` prints it (its
summary line, then each finding, a comment each); then `dlmsd:` and the record as `read
--json` prints it (after the redaction step) with `summary` first, the summary line without
direction, link and frames (Wireshark's Info column); a text longer than a pcapng option
holds goes on in `dlmsd+:` comments. The Lua plugin (`dissector/wireshark/dlmsd.lua`)
shows that record. What carries no APDU is an Ethernet frame of a type of its own
(`ETHERTYPE_EVENT`), with the same comments: a link message (an HDLC SNRM, UA or DISC, an M-Bus
ACK, a mode E line: its frame as it came) and a line that is not a record (a finding on its
own, the end-of-input findings: its summary), so nothing is lost.

The pcapng is written by hand (a few fixed headers per packet): building the packets with Scapy
cost as much as the dissection itself.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from dissector.analysis.record import ApduRecord
from dissector.linktypes import LINKTYPE_ETHERNET
from dissector.output.jsonout import (
    encode,
    end_event,
    finding_event,
    record_text,
    remembered,
    string_text,
)
from dissector.output.text import summary_info, summary_line
from layers.apdu.acse import ACSEAPDU
from layers.apdu.acse_components import UserInformation
from layers.expert import Finding
from layers.fields import field_value
from layers.wrapper import DLMS_PORT

CLIENT_IP, SERVER_IP = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
# Locally administered MAC addresses: the file is the same on every machine.
CLIENT_MAC, SERVER_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
CLIENT_PORT = 40000
#: Wrapper ports: the public client (16) and the management logical device (1).
CLIENT_WPORT, SERVER_WPORT = 16, 1
#: Marks the comment that holds the record's JSON (the Lua plugin looks for it), and the
#: comments that continue it.
JSON_MARK, MORE_MARK = "dlmsd:", "dlmsd+:"
#: JSON characters per comment (a pcapng option holds at most 65,535 bytes; the text is ASCII).
CHUNK = 65_000
_MARKED_CHUNK = len(JSON_MARK) + CHUNK
#: How the `dlmsd:` comment begins: the mark, then the record with its summary first.
_SUMMARY_MARK = JSON_MARK + '{"summary": '
#: IEEE 802 local experimental Ethernet type: the packets that carry no APDU (link messages
#: such as HDLC SNRM/UA/DISC, findings that are not records).
ETHERTYPE_EVENT = 0x88B5
APPLICATION = b"dlms-dissector"

#: An export packet: its enhanced packet block (the bytes of the file) and its time. A worker
#: process makes it whole; the parent only writes it.
PcapItem = tuple[bytes, float]


def _ber_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def acse_deciphered(pkt: ACSEAPDU, envelope: object, plain: bytes) -> bytes:
    """The ACSE APDU's bytes with the ciphered APDU in its user-information replaced by `plain`
    (every other component as it came, the BER lengths recomputed)."""
    parts = [_user_information(plain) if isinstance(comp, UserInformation)
             and comp.apdu is envelope else bytes(comp)
             for comp in field_value(pkt, "components") or ()]
    return _acse_bytes(bytes(pkt)[:1], b"".join(parts))


def _user_information(plain: bytes) -> bytes:
    inner = b"\x04" + _ber_length(len(plain)) + plain
    return b"\xbe" + _ber_length(len(inner)) + inner


def _acse_bytes(tag: bytes, body: bytes) -> bytes:
    return tag + _ber_length(len(body)) + body


def apdu_bytes(rec: ApduRecord, plain: bytes | None) -> bytes:
    """What the export carries of a record: the APDU, deciphered where possible (`plain`, the
    record's plaintext), else (no key, or nothing inside the envelope) as captured."""
    fast = rec.fast
    if not plain:
        return fast.data if fast is not None else captured(rec.packet)
    if fast is not None:  # the ACSE APDU's components as they came, the user-information
        acse = fast.acse  # deciphered (`acse_deciphered`, without the Packets)
        if acse is None or acse.user_information_span is None:
            return plain
        data, (start, stop) = fast.data, acse.user_information_span
        return _acse_bytes(data[:1], data[acse.components_at:start] + _user_information(plain)
                           + data[stop:])
    if isinstance(rec.packet, ACSEAPDU):
        return acse_deciphered(rec.packet, rec.tree_envelope, plain)
    return plain


def captured(pkt: Any) -> bytes:
    """A dissected packet's bytes as they came (a malformed one may not build back the same)."""
    original = getattr(pkt, "original", None)
    return bytes(original) if original is not None else bytes(pkt)


def _ip_sum(words: bytes) -> int:
    return sum(struct.unpack(f"!{len(words) // 2}H", words))


@dataclass(frozen=True, slots=True)
class _Headers:
    """The headers of one direction that do not depend on the APDU's length."""

    ethernet: bytes  # destination and source MAC addresses, type IPv4
    addresses: bytes  # IPv4 source and destination
    ports: bytes  # UDP source and destination
    wrapper: bytes  # wrapper version, source and destination wPort
    partial: int  # the IPv4 header's 16-bit words but its total length and checksum, summed


def _headers(to_server: bool) -> _Headers:
    src, dst = (CLIENT_IP, SERVER_IP) if to_server else (SERVER_IP, CLIENT_IP)
    hw_src, hw_dst = (CLIENT_MAC, SERVER_MAC) if to_server else (SERVER_MAC, CLIENT_MAC)
    sport, dport = (CLIENT_PORT, DLMS_PORT) if to_server else (DLMS_PORT, CLIENT_PORT)
    wsrc, wdst = (CLIENT_WPORT, SERVER_WPORT) if to_server else (SERVER_WPORT, CLIENT_WPORT)
    return _Headers(hw_dst + hw_src + struct.pack("!H", ETHERTYPE_IPV4), src + dst,
                    struct.pack("!HH", sport, dport), struct.pack("!HHH", 1, wsrc, wdst),
                    _ip_sum(IPV4_FIXED + src + dst))


#: IPv4 version and header length, TOS; identification 1, no fragment, TTL 64, UDP.
IPV4_FIXED = bytes([0x45, 0, 0, 1, 0, 0, 64, 17])
ETHERTYPE_IPV4 = 0x0800
HEADERS = {True: _headers(True), False: _headers(False)}
#: Ethernet, IPv4 (total length, checksum), UDP (length, checksum 0: none, as IPv4 allows),
#: the wrapper (its length) in one pack.
FRAME = struct.Struct("!14s2sH6sH8s4sHH6sH")


def _new_frame_head(size: int, to_server: bool) -> bytes:
    """The Ethernet, IPv4, UDP and wrapper headers before an APDU of `size` bytes, from the
    client or from the server, made and kept in `_FRAME_HEADS` (sizes repeat)."""
    h = HEADERS[to_server]
    udp_len = min(16 + size, 0xFFFF)
    total = min(20 + udp_len, 0xFFFF)
    check = h.partial + total
    while check > 0xFFFF:
        check = (check & 0xFFFF) + (check >> 16)
    return remembered(_FRAME_HEADS, (to_server, size), FRAME.pack(
        h.ethernet, IPV4_FIXED[:2], total, IPV4_FIXED[2:], ~check & 0xFFFF, h.addresses,
        h.ports, udp_len, 0, h.wrapper, min(size, 0xFFFF)))


#: The frame headers by (from the client, APDU size): look here first.
_FRAME_HEADS: dict[tuple[bool, int], bytes] = {}


def json_comments(body: str) -> tuple[str, ...]:
    """The `dlmsd:` comment of a JSON text, and its `dlmsd+:` continuations when it is longer
    than a pcapng option holds (the plugin joins them)."""
    return (JSON_MARK + body[:CHUNK], *(MORE_MARK + body[at:at + CHUNK]
                                         for at in range(CHUNK, len(body), CHUNK)))


def pcap_item(rec: ApduRecord, info: str | None = None, as_json: dict[str, Any] | None = None,
              body: str | None = None, line: str | None = None) -> PcapItem:
    """The export packet of a (redacted) record. What the caller has made already is reused:
    `info` (`text.summary_info`), `as_json` (the record's JSON object), `body` (the
    record's JSON text after the number, `jsonout.record_text`) and `line` (the summary
    line, `text.summary_line`)."""
    to_server = rec.direction != "server->client"
    plain: Any = ...  # the plaintext, once known (`record_text`)
    if rec.link_message:  # no APDU for a DLMS dissector: the link frame as it came, under a
        fast = rec.fast  # type of its own
        data = fast.data if fast is not None else captured(rec.packet)
        head = _EVENT_HEADS[to_server]
    else:
        data = apdu_bytes(rec, plain := rec.plaintext())
        head = _FRAME_HEADS.get((to_server, len(data))) or _new_frame_head(len(data), to_server)
    if info is None:
        info = summary_info(rec)
    summary = string_text(info)  # the record, after the mark and the summary (one text made)
    text = f"{_SUMMARY_MARK}{summary}, {body}" if body is not None else \
        record_text(rec, as_json, f"{_SUMMARY_MARK}{summary}, ", plain)
    if line is None:
        line = summary_line(rec, info)
    # for people, what `read` prints of the record, a comment per line: the summary line, then
    # each finding
    findings = rec.all_findings()
    time = rec.time
    if not findings and len(text) <= _MARKED_CHUNK:  # the common case: two comments
        return packet_block(head, data, time, (line, text)), time
    return packet_block(head, data, time, (line, *[f.line() for f in findings],
                                           *json_comments(text[len(JSON_MARK):]))), time


@dataclass(slots=True)
class Later:
    """A record's export packet, made later (`PcapOut` makes them in batches of `BATCH`): the
    record and what `pcap_item` reuses of its rendering."""

    rec: ApduRecord
    info: str | None = None
    as_json: dict[str, Any] | None = None
    body: str | None = None
    line: str | None = None


#: Records whose packets a serial `read -w` makes in a row, after their text is printed: the
#: export's code and the dissection's each stay in the processor's caches for a batch instead of
#: taking turns at every record (bench/README.md: the export adds a quarter less per APDU).
BATCH = 32


def event_item(event: dict[str, Any], summary: str, time: float) -> PcapItem:
    """The export packet of a line of `read --json` that is not a record (a finding on its own,
    the end-of-input findings): an Ethernet frame of the local experimental type with the
    summary as its payload, the line (with its summary) in the `dlmsd:` comment."""
    text = encode({"summary": summary, **event})
    return packet_block(_EVENT_HEADS[True], summary.encode(), time,
                        (summary, *json_comments(text))), time


#: The Ethernet header of a frame of the local experimental type (no IP, no UDP 4059): what
#: carries no APDU, between the MAC addresses of that direction's APDU packets; by whether it
#: comes from the client (an event's direction is unknown: the client's addresses).
_EVENT_HEADS = {to_server: h.ethernet[:12] + struct.pack("!H", ETHERTYPE_EVENT)
                for to_server, h in HEADERS.items()}


OPTION = struct.Struct("<HH")
EPB_HEAD = struct.Struct("<IIIIIII")  # block type and length, then the packet block's fields
OPT_COMMENT, OPT_END = 1, 0
MAX_OPTION = 0xFFFF


def _option(code: int, value: bytes) -> bytes:
    value = value[:MAX_OPTION]
    return OPTION.pack(code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(kind: int, body: bytes) -> bytes:
    size = 12 + len(body)
    return struct.pack("<II", kind, size) + body + struct.pack("<I", size)


def header_blocks() -> bytes:
    """Section header (little-endian, application name) and one Ethernet interface."""
    shb = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _option(4, APPLICATION) + _option(0, b"")
    idb = struct.pack("<HHI", LINKTYPE_ETHERNET, 0, 0)
    return _block(0x0A0D0D0A, shb) + _block(1, idb)


#: By how many zero bytes pad the value before to 32 bits: those bytes, then an opt_comment
#: option's code and length (`_OPTIONS`); then the end-of-options option and the block's
#: length again (`_ENDS`).
_OPTIONS = tuple(struct.Struct(f"<{pad}xHH") for pad in range(4))
_ENDS = tuple(struct.Struct(f"<{pad}xHHI") for pad in range(4))


def packet_block(head: bytes, data: bytes, time: float, comments: tuple[str, ...]) -> bytes:
    """An enhanced packet block of the packet `head` + `data` (microsecond time stamps, the
    comments as opt_comment; a text longer than an option holds is cut at a character's end:
    the JSON texts are split into `dlmsd+:` comments before)."""
    n = len(head) + len(data)
    pad = -n % 4
    stamp = round(time * 1_000_000)
    if len(comments) == 2:  # most packets (a summary line and a record): the layout below,
        first, second = comments[0].encode(), comments[1].encode()  # without the loop
        m1, m2 = len(first), len(second)
        if m1 <= MAX_OPTION and m2 <= MAX_OPTION:
            pad1, pad2 = -m1 % 4, -m2 % 4
            size = 44 + n + pad + m1 + pad1 + m2 + pad2
            return b"".join((EPB_HEAD.pack(6, size, 0, stamp >> 32, stamp & 0xFFFFFFFF, n, n),
                             head, data, _OPTIONS[pad].pack(OPT_COMMENT, m1), first,
                             _OPTIONS[pad1].pack(OPT_COMMENT, m2), second,
                             _ENDS[pad2].pack(OPT_END, 0, size)))
    parts = [b"", head, data]
    size = 36 + n  # the head (28 bytes), the end option and the length at the end
    for text in comments:  # an opt_comment each, after the padding of what comes before
        value = text.encode()
        m = len(value)
        if m > MAX_OPTION:
            value = value[:MAX_OPTION].decode(errors="ignore").encode()
            m = len(value)
        parts += (_OPTIONS[pad].pack(OPT_COMMENT, m), value)
        size += pad + 4 + m
        pad = -m % 4
    size += pad
    parts[0] = EPB_HEAD.pack(6, size, 0, stamp >> 32, stamp & 0xFFFFFFFF, n, n)
    parts.append(_ENDS[pad].pack(OPT_END, 0, size))
    return b"".join(parts)


class PcapOut:
    """Writes the export: a file, or a fifo Wireshark reads while it is written (`flush_each`).
    The packets of records rendered for later (`Later`) are made in batches of `BATCH` (at
    once with `flush_each`), in order with the rest."""

    def __init__(self, path: str | BinaryIO, flush_each: bool = False) -> None:
        # a file takes the blocks in large writes (a block is a few kB: the default buffer
        # would make a system call every few packets)
        self.stream: BinaryIO = open(path, "wb", buffering=1 << 20) \
            if isinstance(path, str) else path
        self.flush_each = flush_each
        self.time = 0.0  # of the last packet written
        self.later: list[Later] = []  # packets to make, in order, before anything else
        self.stream.write(header_blocks())
        if flush_each:
            self.stream.flush()

    def write_item(self, item: PcapItem | Later | None) -> None:
        """Write what `pcap_item` or `event_item` made (a worker process makes it whole), or
        keep a `Later` for its batch."""
        if item is None:
            return
        if isinstance(item, Later):
            self.later.append(item)
            if len(self.later) >= BATCH or self.flush_each:
                self.write_later()
            return
        if self.later:
            self.write_later()
        self.stream.write(item[0])
        self.time = item[1]
        if self.flush_each:
            self.stream.flush()

    def write_later(self) -> None:
        """Make and write the packets kept for later, in order."""
        write = self.stream.write
        for later in self.later:
            block, self.time = pcap_item(later.rec, later.info, later.as_json, later.body,
                                         later.line)
            write(block)
        self.later.clear()
        if self.flush_each:
            self.stream.flush()

    def finding(self, f: Finding) -> None:
        """A finding on its own (about the input or a live source) as a packet."""
        self.write_later()
        self.write_item(event_item(finding_event(f), f.line(),
                                   f.time or self.time))

    def end(self, findings: list[Finding]) -> None:
        """The end-of-input findings (what never completed) as one last packet."""
        self.write_later()
        if findings:
            count = f"{len(findings)} finding{'s' if len(findings) != 1 else ''}"
            self.write_item(event_item(end_event(findings), f"end of input: {count} ("
                                       + ", ".join(sorted({f.code for f in findings})) + ")",
                                       max(self.time, *(f.time for f in findings))))

    def close(self) -> None:
        try:
            self.write_later()
        finally:
            self.stream.close()
