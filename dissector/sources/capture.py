"""Capture files -> records: pcap/pcapng streamed record by record, headers parsed with `struct`.

Link types: Ethernet (1, with 802.1Q/802.1ad tags), Linux cooked SLL (113) and SLL2 (276),
NULL/loopback (0) and LOOP (108), raw IP (101, 12, 14, 228, 229), and 147 (DLT_USER0: HDLC bytes
from a serial line). IPv4 options and fragments (reassembled), IPv6 extension headers (hop-by-hop,
routing, destination options, AH, fragments, reassembled). TCP goes through `tcp.TcpReassembler`;
UDP datagrams and serial records become records as they are. Traffic that is not DLMS is
skipped silently: a TCP/UDP flow is DLMS when it uses port 4059 or a configured port, or when
its payload looks like HDLC or wrapper framing.
"""

from __future__ import annotations

import os
import socket
import struct
from collections import OrderedDict
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from scapy.error import Scapy_Exception
from scapy.utils import RawPcapNgReader, RawPcapReader

from dissector.framing.splitter import detect_transport
from dissector.sources.tcp import DLMS_PORT, TcpReassembler
from dissector.stages import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    UNKNOWN,
    Direction,
    LinkEvent,
    Note,
    Record,
    endpoint,
)

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_USER0 = 147
LINKTYPE_LINUX_SLL2 = 276
RAW_IP_LINKTYPES = frozenset({12, 14, 101, 228, 229})
SERIAL_LINK = "serial 1"

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
VLAN_TAGS = frozenset({0x8100, 0x88A8, 0x9100})
IPPROTO_TCP, IPPROTO_UDP = 6, 17
IPV6_SKIPPABLE = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
IPV6_FRAGMENT, IPV6_AH, IPV6_NONE = 44, 51, 59
#: pcapng EPB direction flag -> direction on a serial link (the capture is taken at the client).
PCAPNG_DIRECTIONS: dict[int, Direction] = {1: SERVER_TO_CLIENT, 2: CLIENT_TO_SERVER}

MAX_FRAGMENT_GROUPS = 256
MAX_FRAGMENT_BYTES = 2 * 65535  # fragment bytes held for one datagram (overlaps included)
MAX_FRAGMENT_PIECES = 1024  # fragments held for one datagram
PRIME_SNIFFER_PORT = 7919  # PRIME PLC sniffers export MAC frames over UDP to this port
MAX_UDP_NOTES = 8  # datagrams without framing noted one by one per link; the rest are counted
MAX_RECORD = 65535  # Scapy's read limit per record
_U16 = struct.Struct("!H")
_IPV4 = struct.Struct("!BxHHHxB")  # version/ihl, total length, id, flags/offset, protocol
_TCP = struct.Struct("!HHIIH")  # ports, seq, ack, data offset + flags
_UDP = struct.Struct("!HHH")


class CaptureError(Exception):
    """The file cannot be read as a capture; the message is one line, fit for the CLI."""


PCAP_MAGICS = frozenset({
    b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
    b"\x0a\x0d\x0d\x0a",
})
GZIP_MAGIC = b"\x1f\x8b"


CaptureSource = str | os.PathLike[str] | BinaryIO


def read_capture(
    path: CaptureSource | Sequence[CaptureSource], ports: dict[int, str] | None = None
) -> Iterator[Record | LinkEvent | Note]:
    """Stream the DLMS records of a pcap or pcapng file (optionally gzipped), in capture order.

    `path` is a file name or a binary file object, or a list of them: several files are read
    one after the other as one capture (as `mergecap -a` would join them: frame numbers go on,
    and a TCP stream or an association that a ring-buffer file cut goes on in the next file).
    `ports` maps extra DLMS port numbers to the transport they carry ("hdlc", "wrapper" or
    "raw"). Opening errors raise `CaptureError` at once, for every file before any is read;
    records are produced lazily, one capture record at a time, so memory does not grow with
    the files.
    """
    return _records(_open_all(path), ports or {})


def _open_all(path: CaptureSource | Sequence[CaptureSource]) -> list[tuple[Any, str]]:
    """Readers on every file (all opened, or none: the first failure closes the others)."""
    paths = list(path) if isinstance(path, list | tuple) else [path]
    if not paths:
        raise CaptureError("no capture file given")
    readers: list[tuple[Any, str]] = []
    try:
        for one in paths:
            readers.append(_open(one))
    except CaptureError:
        for reader, _ in readers:
            reader.close()
        raise
    return readers


def check_capture(path: CaptureSource | Sequence[CaptureSource]) -> None:
    """Raise `CaptureError` as `read_capture` would for a file that cannot be opened; read
    nothing."""
    for reader, _ in _open_all(path):
        reader.close()


def _open(path: CaptureSource) -> tuple[Any, str]:
    """A raw pcap/pcapng reader on one file and the file's label; `CaptureError` if unusable."""
    if isinstance(path, str | os.PathLike):
        label = os.fspath(path)
        try:
            handle: BinaryIO = open(label, "rb")  # closed with the reader
        except OSError as exc:
            raise CaptureError(f"{label}: {exc.strerror or exc}") from None
        magic = handle.read(4)
        handle.seek(0)
        problem = None
        if not magic:
            problem = "empty file, not a capture"
        elif magic not in PCAP_MAGICS and magic[:2] != GZIP_MAGIC:
            problem = "not a pcap or pcapng capture file"
        if problem:
            handle.close()
            raise CaptureError(f"{label}: {problem}")
    else:
        handle = path
        label = str(getattr(path, "name", "capture"))
    try:
        return RawPcapReader(handle), label
    except (Scapy_Exception, EOFError, OSError) as exc:
        handle.close()
        raise CaptureError(f"{label}: not a readable pcap or pcapng file ({exc})") from None


def _records(readers: list[tuple[Any, str]], ports: dict[int, str]
             ) -> Iterator[Record | LinkEvent | Note]:
    decoder = FrameDecoder(ports)
    frame_no = 0
    try:
        for reader, label in readers:
            frame_no = yield from _file_records(reader, label, decoder, frame_no)
        yield from decoder.finish()
    finally:
        for reader, _ in readers:
            reader.close()


def _file_records(reader: Any, label: str, decoder: FrameDecoder, frame_no: int
                  ) -> Generator[Record | LinkEvent | Note, None, int]:
    """The records of one file, frames numbered on from `frame_no`; returns the last number."""
    pcapng = isinstance(reader, RawPcapNgReader)
    scale = 1e-9 if getattr(reader, "nano", False) else 1e-6
    linktype = getattr(reader, "linktype", None)
    time = 0.0
    packets = iter(reader)
    while True:
        try:
            data, meta = next(packets)
        except StopIteration:
            break
        except Scapy_Exception as exc:
            yield Note(frame_no + 1, time, "", "error", "capture.unreadable",
                       f"{label}: capture record {frame_no + 1} is unreadable ({exc}); "
                       "the rest of the file is ignored")
            break
        frame_no += 1
        direction: Direction = UNKNOWN
        comment = None
        if pcapng:
            linktype = meta.linktype
            if meta.tshigh is not None:
                time = ((meta.tshigh << 32) | meta.tslow) / meta.tsresol
            direction = PCAPNG_DIRECTIONS.get(meta.direction or 0, UNKNOWN)
            if meta.comments:
                comment = "; ".join(c.decode("utf-8", "replace") for c in meta.comments)
        else:
            time = meta.sec + meta.usec * scale
            if len(data) < meta.caplen <= MAX_RECORD:
                yield Note(frame_no, time, "", "warning", "capture.truncated",
                           f"{label}: the file ends inside capture record {frame_no} "
                           f"({len(data)} of {meta.caplen} bytes)")
        yield from decoder.frame(frame_no, time, linktype, data, direction, comment)
    return frame_no


def _ip_text(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)


@dataclass(slots=True)
class _FragmentGroup:
    """Fragments of one IP datagram waiting for the rest."""

    pieces: dict[int, bytes] = field(default_factory=dict)
    total: int | None = None
    proto: int | None = None
    first_frame: int = 0
    time: float = 0.0
    size: int = 0


class _Fragments:
    """IPv4 / IPv6 fragment reassembly (bounded: the oldest incomplete datagram is dropped)."""

    def __init__(self, max_groups: int = MAX_FRAGMENT_GROUPS) -> None:
        self.max_groups = max_groups
        self.groups: OrderedDict[tuple[Any, ...], _FragmentGroup] = OrderedDict()
        self.overflowed: list[tuple[tuple[Any, ...], _FragmentGroup]] = []

    def add(self, key: tuple[Any, ...], offset: int, more: bool, data: bytes, proto: int | None,
            frame_no: int, time: float) -> tuple[int, bytes] | None:
        """Add one fragment; return (protocol, payload) once the datagram is complete."""
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _FragmentGroup(first_frame=frame_no, time=time)
        group.time = time
        if offset not in group.pieces or len(group.pieces[offset]) < len(data):
            group.size += len(data) - len(group.pieces.get(offset, b""))
            group.pieces[offset] = data
            if group.size > MAX_FRAGMENT_BYTES or len(group.pieces) > MAX_FRAGMENT_PIECES:
                del self.groups[key]  # overlapping or tiny fragments without end: given up
                self.overflowed.append((key, group))
                return None
        if not more:
            group.total = offset + len(data)
        if offset == 0 and proto is not None:
            group.proto = proto
        if group.total is None or group.proto is None:
            return None
        covered = 0
        for start in sorted(group.pieces):
            if start > covered:
                return None
            covered = max(covered, start + len(group.pieces[start]))
        if covered < group.total:
            return None
        buf = bytearray(group.total)
        for start in sorted(group.pieces):
            piece = group.pieces[start][: group.total - start]
            buf[start : start + len(piece)] = piece
        del self.groups[key]
        return group.proto, bytes(buf)

    def evict(self) -> list[tuple[tuple[Any, ...], _FragmentGroup]]:
        """Drop the oldest groups beyond the limit."""
        out = []
        while len(self.groups) > self.max_groups:
            out.append(self.groups.popitem(last=False))
        return out


class FrameDecoder:
    """Per-capture state: link-layer and IP parsing, TCP reassembly, fragment reassembly."""

    def __init__(self, ports: dict[int, str]) -> None:
        self.ports = ports
        self.server_ports = {DLMS_PORT, *ports}
        self.tcp = TcpReassembler(dict(ports))
        self.fragments = _Fragments()
        self.unsupported: set[int | None] = set()
        self.prime: tuple[int, float, int] | None = None  # first frame, time, datagrams
        self.unframed: dict[str, list] = {}  # link -> [noted, more, last frame, last time]

    def frame(self, frame_no: int, time: float, linktype: int | None, data: bytes,
              direction: Direction, comment: str | None) -> Iterator[Record | LinkEvent | Note]:
        """Records, events and notes produced by one capture record."""
        if linktype == LINKTYPE_ETHERNET:
            if len(data) < 14:
                return
            ethertype = _U16.unpack_from(data, 12)[0]
            p = 14
            while ethertype in VLAN_TAGS and len(data) >= p + 4:
                ethertype = _U16.unpack_from(data, p + 2)[0]
                p += 4
            yield from self._ethertype(frame_no, time, ethertype, data, p, comment)
        elif linktype == LINKTYPE_USER0:
            if data:
                # HDLC from a serial line, or wired M-Bus when the line opens with a long frame
                mbus = len(data) >= 4 and data[0] == data[3] == 0x68 and data[1] == data[2]
                yield Record(frame_no, time, SERIAL_LINK, direction, data,
                             "mbus" if mbus else "hdlc", comment=comment)
        elif linktype in RAW_IP_LINKTYPES:
            yield from self._ip(frame_no, time, data, 0, comment)
        elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            yield from self._ip(frame_no, time, data, 4, comment)
        elif linktype == LINKTYPE_LINUX_SLL:
            if len(data) >= 16:
                yield from self._ethertype(frame_no, time, _U16.unpack_from(data, 14)[0], data,
                                           16, comment)
        elif linktype == LINKTYPE_LINUX_SLL2:
            if len(data) >= 20:
                yield from self._ethertype(frame_no, time, _U16.unpack_from(data, 0)[0], data,
                                           20, comment)
        elif linktype not in self.unsupported:
            self.unsupported.add(linktype)
            yield Note(frame_no, time, "", "warning", "capture.unsupported-linktype",
                       f"link type {linktype} is not supported; its records are skipped")

    def finish(self) -> Iterator[Record | LinkEvent | Note]:
        """End of capture: pending TCP data, incomplete fragments."""
        yield from self.tcp.flush()
        for key, group in self.fragments.groups.items():
            yield self._fragment_note(key, group, "the capture ended first")
        self.fragments.groups.clear()
        for link, (_, more, frame_no, time) in self.unframed.items():
            if more:
                yield Note(frame_no, time, link, "warning", "framing.not-found",
                           f"{more} more UDP datagram(s) on port {DLMS_PORT} were neither HDLC, "
                           f"wrapper nor an APDU (only the first {MAX_UDP_NOTES} are noted one "
                           "by one)")
        self.unframed.clear()
        if self.prime is not None:
            frame_no, time, count = self.prime
            yield Note(frame_no, time, "", "warning", "prime.unsupported",
                       f"{count} UDP datagram(s) on port {PRIME_SNIFFER_PORT} (a PRIME PLC "
                       "sniffer's export of PRIME MAC frames) skipped: PRIME decapsulation is "
                       "not supported")
            self.prime = None

    def _ethertype(self, frame_no: int, time: float, ethertype: int, data: bytes, p: int,
                   comment: str | None) -> Iterator[Record | LinkEvent | Note]:
        if ethertype == ETH_IPV4 or ethertype == ETH_IPV6:
            yield from self._ip(frame_no, time, data, p, comment)

    def _ip(self, frame_no: int, time: float, data: bytes, p: int,
            comment: str | None) -> Iterator[Record | LinkEvent | Note]:
        if len(data) <= p:
            return
        version = data[p] >> 4
        if version == 4:
            yield from self._ipv4(frame_no, time, data, p, comment)
        elif version == 6:
            yield from self._ipv6(frame_no, time, data, p, comment)

    def _ipv4(self, frame_no: int, time: float, data: bytes, p: int,
              comment: str | None) -> Iterator[Record | LinkEvent | Note]:
        if len(data) < p + 20:
            return
        vihl, total, ident, frag, proto = _IPV4.unpack_from(data, p)
        ihl = (vihl & 0x0F) * 4
        if ihl < 20:
            return
        end = p + total if total >= ihl else len(data)  # total 0: segmentation offload
        src, dst = data[p + 12 : p + 16], data[p + 16 : p + 20]
        payload = data[p + ihl : end]
        if frag & 0x3FFF:
            done = self._fragment(("4", src, dst, ident, proto), (frag & 0x1FFF) * 8,
                                  bool(frag & 0x2000), payload, proto, frame_no, time)
            if done is None:
                return
            yield from done[0]
            if done[1] is None:
                return
            payload = done[1]
        yield from self._transport(frame_no, time, proto, src, dst, payload, comment)

    def _ipv6(self, frame_no: int, time: float, data: bytes, p: int,
              comment: str | None) -> Iterator[Record | LinkEvent | Note]:
        if len(data) < p + 40:
            return
        length = _U16.unpack_from(data, p + 4)[0]
        nh = data[p + 6]
        src, dst = data[p + 8 : p + 24], data[p + 24 : p + 40]
        end = min(p + 40 + length, len(data)) if length else len(data)  # a capture may cut it
        q = p + 40
        while True:
            if nh in IPV6_SKIPPABLE or nh == IPV6_AH:
                if q + 8 > end:
                    return
                size = (data[q + 1] + 2) * 4 if nh == IPV6_AH else (data[q + 1] + 1) * 8
                nh = data[q]
                q += size
            elif nh == IPV6_FRAGMENT:
                if q + 8 > end:
                    return
                inner = data[q]
                offset_flags = _U16.unpack_from(data, q + 2)[0]
                ident = data[q + 4 : q + 8]
                q += 8
                offset = offset_flags & 0xFFF8
                done = self._fragment(("6", src, dst, ident), offset, bool(offset_flags & 1),
                                      data[q:end], inner if offset == 0 else None, frame_no, time)
                if done is None:
                    return
                yield from done[0]
                if done[1] is None:
                    return
                proto, payload = self._ipv6_inner(inner, done[1], done[2])
                yield from self._transport(frame_no, time, proto, src, dst, payload, comment)
                return
            else:
                break
        if nh == IPV6_NONE or q > end:
            return
        yield from self._transport(frame_no, time, nh, src, dst, data[q:end], comment)

    @staticmethod
    def _ipv6_inner(inner: int, payload: bytes, first_proto: int | None) -> tuple[int, bytes]:
        """Skip extension headers that follow the fragment header in a reassembled payload."""
        nh = first_proto if first_proto is not None else inner
        q = 0
        while (nh in IPV6_SKIPPABLE or nh == IPV6_AH) and q + 8 <= len(payload):
            size = (payload[q + 1] + 2) * 4 if nh == IPV6_AH else (payload[q + 1] + 1) * 8
            nh = payload[q]
            q += size
        return nh, payload[q:]

    def _fragment(self, key: tuple[Any, ...], offset: int, more: bool, payload: bytes,
                  proto: int | None, frame_no: int, time: float
                  ) -> tuple[list[Note], bytes | None, int | None] | None:
        """Add a fragment: (notes, reassembled payload or None, protocol) or None if pending."""
        done = self.fragments.add(key, offset, more, payload, proto, frame_no, time)
        notes = [self._fragment_note(k, g, "too many incomplete datagrams")
                 for k, g in self.fragments.evict()]
        notes += [self._fragment_note(k, g, f"more than {MAX_FRAGMENT_PIECES} fragments or "
                                      f"{MAX_FRAGMENT_BYTES} bytes for one datagram")
                  for k, g in self.fragments.overflowed]
        self.fragments.overflowed.clear()
        if done is None:
            return (notes, None, None) if notes else None
        return notes, done[1], done[0]

    def _fragment_note(self, key: tuple[Any, ...], group: _FragmentGroup, reason: str) -> Note:
        version, src, dst = key[0], _ip_text(key[1]), _ip_text(key[2])
        have = group.size
        total = f"{group.total}" if group.total is not None else "?"
        first = "" if 0 in group.pieces else ", first fragment missing"
        return Note(group.first_frame, group.time, "", "warning", "ip.fragments-incomplete",
                    f"IPv{version} datagram {src} -> {dst}: {have} of {total} byte(s) of "
                    f"fragments captured{first}; skipped ({reason})")

    def _transport(self, frame_no: int, time: float, proto: int, src_raw: bytes, dst_raw: bytes,
                   payload: bytes, comment: str | None) -> Iterator[Record | LinkEvent | Note]:
        if proto == IPPROTO_TCP:
            if len(payload) < 20:
                return
            sport, dport, seq, ack, off_flags = _TCP.unpack_from(payload, 0)
            offset = (off_flags >> 12) * 4
            if offset < 20:
                return
            yield from self.tcp.packet(frame_no, time, _ip_text(src_raw), sport,
                                       _ip_text(dst_raw), dport, seq, ack, off_flags & 0x3F,
                                       payload[offset:], comment)
        elif proto == IPPROTO_UDP:
            if len(payload) < 8:
                return
            sport, dport, length = _UDP.unpack_from(payload, 0)
            body = payload[8:length] if 8 <= length <= len(payload) else payload[8:]
            record = self._udp(frame_no, time, src_raw, sport, dst_raw, dport, body, comment)
            if record is not None:
                yield record

    def _udp(self, frame_no: int, time: float, src_raw: bytes, sport: int, dst_raw: bytes,
             dport: int, body: bytes, comment: str | None) -> Record | Note | None:
        if not body:
            return None
        hint = self.ports.get(dport) or self.ports.get(sport)
        src, dst = _ip_text(src_raw), _ip_text(dst_raw)
        if hint is None:
            detected = detect_transport(body)
            on_dlms_port = DLMS_PORT in (sport, dport)
            if detected is None and on_dlms_port:
                link = f"udp {endpoint(src, sport)}-{endpoint(dst, dport)}"
                count = self.unframed.get(link)
                if count is None:
                    if len(self.unframed) >= MAX_FRAGMENT_GROUPS:
                        self.unframed.pop(next(iter(self.unframed)))
                    count = self.unframed[link] = [0, 0, frame_no, time]
                count[2:] = [frame_no, time]
                if count[0] >= MAX_UDP_NOTES:
                    count[1] += 1  # a flood of noise: counted, reported at the end
                    return None
                count[0] += 1
                return Note(frame_no, time, link, "warning", "framing.not-found",
                            f"UDP datagram of {len(body)} byte(s) on port {DLMS_PORT} is neither "
                            "HDLC, wrapper nor an APDU")
            if detected is None or (detected == "raw" and not on_dlms_port):
                if PRIME_SNIFFER_PORT in (sport, dport):
                    first = self.prime or (frame_no, time, 0)
                    self.prime = (first[0], first[1], first[2] + 1)
                return None
            hint = detected
        to_server = dport in self.server_ports
        if to_server == (sport in self.server_ports):
            if sport and dport and sport != dport:
                to_server = dport < sport  # neither or both on a DLMS port: lower port = server
            else:
                to_server = (src, sport) > (dst, dport)  # any stable orientation for the link
        direction: Direction = CLIENT_TO_SERVER if to_server else SERVER_TO_CLIENT
        if sport == 0 or dport == 0 or sport == dport:
            direction = UNKNOWN  # port 0 or one port both ways: the ports do not tell
        client, server = ((src, sport), (dst, dport)) if to_server else ((dst, dport), (src, sport))
        link = f"udp {endpoint(*client)}-{endpoint(*server)}"
        return Record(frame_no, time, link, direction, body, hint, datagram=True, comment=comment)
