"""Capture frames -> records: link layers, IP and UDP parsed with `struct`, TCP through
`tcp.TcpReassembler`.

Link types: Ethernet (1, with 802.1Q/802.1ad tags), Linux cooked SLL (113) and SLL2 (276),
NULL/loopback (0) and LOOP (108), raw IP (101, 12, 14, 228, 229), and 147 (DLT_USER0: the
bytes of a serial line). IPv4 options and fragments (reassembled), IPv6 extension headers
(hop-by-hop, routing, destination options, AH, fragments, reassembled). UDP datagrams and
serial records become records as they are. Traffic that is not DLMS is skipped silently: a
TCP/UDP flow is DLMS when it uses port 4059 or a configured port, or when its payload looks
like HDLC or wrapper framing.
"""

from __future__ import annotations

import socket
import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from dissector.linktypes import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_USER0,
    RAW_IP_LINKTYPES,
)
from dissector.sources.detect import detect_transport
from dissector.sources.tcp import DLMS_PORT, TcpReassembler
from dissector.stages import (
    CLIENT_TO_SERVER,
    SERIAL_LINK,
    SERVER_TO_CLIENT,
    UNKNOWN,
    Direction,
    Finding,
    LinkEvent,
    Record,
    endpoint,
    note,
)

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
VLAN_TAGS = frozenset({0x8100, 0x88A8, 0x9100})
IPPROTO_TCP, IPPROTO_UDP = 6, 17
IPV6_SKIPPABLE = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
IPV6_FRAGMENT, IPV6_AH, IPV6_NONE = 44, 51, 59

MAX_FRAGMENT_GROUPS = 256
MAX_FRAGMENT_BYTES = 2 * 65535  # fragment bytes held for one datagram (overlaps included)
MAX_FRAGMENT_PIECES = 1024  # fragments held for one datagram
PRIME_SNIFFER_PORT = 7919  # PRIME PLC sniffers export MAC frames over UDP to this port
MAX_UDP_NOTES = 8  # datagrams without framing noted one by one per link; the rest are counted
_U16 = struct.Struct("!H")
_IPV4 = struct.Struct("!BxHHHxB")  # version/ihl, total length, id, flags/offset, protocol
_TCP = struct.Struct("!HHIIH")  # ports, seq, ack, data offset + flags
_UDP = struct.Struct("!HHH")


@lru_cache(maxsize=4096)
def _ip_text(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)


#: What one capture record gives.
Out = list[Record | LinkEvent | Finding]


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
              direction: Direction, comment: str | None) -> Out:
        """Records, events and notes produced by one capture record (lists all the way
        down: a frame passes five layers, and a generator at each cost more than the rest)."""
        if linktype == LINKTYPE_ETHERNET:
            if len(data) < 14:
                return []
            ethertype = _U16.unpack_from(data, 12)[0]
            p = 14
            while ethertype in VLAN_TAGS and len(data) >= p + 4:
                ethertype = _U16.unpack_from(data, p + 2)[0]
                p += 4
            return self._ethertype(frame_no, time, ethertype, data, p, comment)
        if linktype == LINKTYPE_USER0:
            if not data:
                return []
            # a serial line: sign-on messages, HDLC or wired M-Bus
            return [Record(frame_no, time, SERIAL_LINK, direction, data, "serial",
                           comment=comment)]
        if linktype in RAW_IP_LINKTYPES:
            return self._ip(frame_no, time, data, 0, comment)
        if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            return self._ip(frame_no, time, data, 4, comment)
        if linktype == LINKTYPE_LINUX_SLL:
            if len(data) < 16:
                return []
            return self._ethertype(frame_no, time, _U16.unpack_from(data, 14)[0], data, 16,
                                   comment)
        if linktype == LINKTYPE_LINUX_SLL2:
            if len(data) < 20:
                return []
            return self._ethertype(frame_no, time, _U16.unpack_from(data, 0)[0], data, 20,
                                   comment)
        if linktype in self.unsupported:
            return []
        self.unsupported.add(linktype)
        return [note(frame_no, time, "", "warning", "capture.unsupported-linktype",
                     f"link type {linktype} is not supported; its records are skipped")]

    def finish(self) -> Iterator[Record | LinkEvent | Finding]:
        """End of capture: pending TCP data, incomplete fragments."""
        yield from self.tcp.flush()
        for key, group in self.fragments.groups.items():
            yield self._fragment_note(key, group, "the capture ended first")
        self.fragments.groups.clear()
        for link, (_, more, frame_no, time) in self.unframed.items():
            if more:
                yield note(frame_no, time, link, "warning", "framing.not-found",
                           f"{more} more UDP datagram(s) on port {DLMS_PORT} were neither HDLC, "
                           f"wrapper nor an APDU (only the first {MAX_UDP_NOTES} are noted one "
                           "by one)")
        self.unframed.clear()
        if self.prime is not None:
            frame_no, time, count = self.prime
            yield note(frame_no, time, "", "warning", "prime.unsupported",
                       f"{count} UDP datagram(s) on port {PRIME_SNIFFER_PORT} (a PRIME PLC "
                       "sniffer's export of PRIME MAC frames) skipped: PRIME decapsulation is "
                       "not supported")
            self.prime = None

    def _ethertype(self, frame_no: int, time: float, ethertype: int, data: bytes, p: int,
                   comment: str | None) -> Out:
        if ethertype == ETH_IPV4 or ethertype == ETH_IPV6:
            return self._ip(frame_no, time, data, p, comment)
        return []

    def _ip(self, frame_no: int, time: float, data: bytes, p: int, comment: str | None) -> Out:
        if len(data) <= p:
            return []
        version = data[p] >> 4
        if version == 4:
            return self._ipv4(frame_no, time, data, p, comment)
        if version == 6:
            return self._ipv6(frame_no, time, data, p, comment)
        return []

    def _ipv4(self, frame_no: int, time: float, data: bytes, p: int, comment: str | None) -> Out:
        if len(data) < p + 20:
            return []
        vihl, total, ident, frag, proto = _IPV4.unpack_from(data, p)
        ihl = (vihl & 0x0F) * 4
        if ihl < 20:
            return []
        end = p + total if total >= ihl else len(data)  # total 0: segmentation offload
        src, dst = data[p + 12 : p + 16], data[p + 16 : p + 20]
        payload = data[p + ihl : end]
        if not frag & 0x3FFF:
            return self._transport(frame_no, time, proto, src, dst, payload, comment)
        done = self._fragment(("4", src, dst, ident, proto), (frag & 0x1FFF) * 8,
                              bool(frag & 0x2000), payload, proto, frame_no, time)
        if done is None:
            return []
        out: Out = list(done[0])
        if done[1] is None:
            return out
        return out + self._transport(frame_no, time, proto, src, dst, done[1], comment)

    def _ipv6(self, frame_no: int, time: float, data: bytes, p: int, comment: str | None) -> Out:
        if len(data) < p + 40:
            return []
        length = _U16.unpack_from(data, p + 4)[0]
        nh = data[p + 6]
        src, dst = data[p + 8 : p + 24], data[p + 24 : p + 40]
        end = min(p + 40 + length, len(data)) if length else len(data)  # a capture may cut it
        q = p + 40
        while True:
            if nh in IPV6_SKIPPABLE or nh == IPV6_AH:
                if q + 8 > end:
                    return []
                size = (data[q + 1] + 2) * 4 if nh == IPV6_AH else (data[q + 1] + 1) * 8
                nh = data[q]
                q += size
            elif nh == IPV6_FRAGMENT:
                if q + 8 > end:
                    return []
                inner = data[q]
                offset_flags = _U16.unpack_from(data, q + 2)[0]
                ident = data[q + 4 : q + 8]
                q += 8
                offset = offset_flags & 0xFFF8
                done = self._fragment(("6", src, dst, ident), offset, bool(offset_flags & 1),
                                      data[q:end], inner if offset == 0 else None, frame_no, time)
                if done is None:
                    return []
                out: Out = list(done[0])
                if done[1] is None:
                    return out
                proto, payload = self._ipv6_inner(inner, done[1], done[2])
                return out + self._transport(frame_no, time, proto, src, dst, payload, comment)
            else:
                break
        if nh == IPV6_NONE or q > end:
            return []
        return self._transport(frame_no, time, nh, src, dst, data[q:end], comment)

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
                  ) -> tuple[list[Finding], bytes | None, int | None] | None:
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

    def _fragment_note(self, key: tuple[Any, ...], group: _FragmentGroup, reason: str) -> Finding:
        version, src, dst = key[0], _ip_text(key[1]), _ip_text(key[2])
        have = group.size
        total = f"{group.total}" if group.total is not None else "?"
        first = "" if 0 in group.pieces else ", first fragment missing"
        return note(group.first_frame, group.time, "", "warning", "ip.fragments-incomplete",
                    f"IPv{version} datagram {src} -> {dst}: {have} of {total} byte(s) of "
                    f"fragments captured{first}; skipped ({reason})")

    def _transport(self, frame_no: int, time: float, proto: int, src_raw: bytes, dst_raw: bytes,
                   payload: bytes, comment: str | None) -> Out:
        if proto == IPPROTO_TCP:
            if len(payload) < 20:
                return []
            sport, dport, seq, ack, off_flags = _TCP.unpack_from(payload, 0)
            offset = (off_flags >> 12) * 4
            if offset < 20:
                return []
            return self.tcp.packet(frame_no, time, _ip_text(src_raw), sport, _ip_text(dst_raw),
                                   dport, seq, ack, off_flags & 0x3F, payload[offset:], comment)
        if proto == IPPROTO_UDP:
            if len(payload) < 8:
                return []
            sport, dport, length = _UDP.unpack_from(payload, 0)
            body = payload[8:length] if 8 <= length <= len(payload) else payload[8:]
            record = self._udp(frame_no, time, src_raw, sport, dst_raw, dport, body, comment)
            return [record] if record is not None else []
        return []

    def _udp(self, frame_no: int, time: float, src_raw: bytes, sport: int, dst_raw: bytes,
             dport: int, body: bytes, comment: str | None) -> Record | Finding | None:
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
                return note(frame_no, time, link, "warning", "framing.not-found",
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
