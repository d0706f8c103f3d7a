"""Build pcap files in memory: the captures the property tests and the fuzz targets feed to `read`.

Only `struct`: Ethernet/IPv4/IPv6 with TCP or UDP, and link type 147 (HDLC from a serial line).
Checksums are left zero (the reader does not check them).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

LINKTYPE_ETHERNET = 1
LINKTYPE_USER0 = 147

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def pcap(records: Iterable[bytes], linktype: int = LINKTYPE_ETHERNET,
         snaplen: int = 65535) -> bytes:
    """A classic pcap file (microsecond timestamps, little endian) holding `records`."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for i, data in enumerate(records):
        out.append(struct.pack("<IIII", 1_700_000_000 + i // 1000, (i % 1000) * 1000,
                               len(data), len(data)))
        out.append(data)
    return b"".join(out)


def ipv4(src: str, dst: str, proto: int, payload: bytes, ident: int = 0,
         frag: int = 0) -> bytes:
    """An IPv4 header (no options) in front of `payload`; `frag` is flags+offset as on the wire."""
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, frag, 64, proto, 0,
                       bytes(int(x) for x in src.split(".")),
                       bytes(int(x) for x in dst.split("."))) + payload


def ether(ip_packet: bytes, ethertype: int = 0x0800) -> bytes:
    return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + \
        struct.pack("!H", ethertype) + ip_packet


def tcp(sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4,
                       flags, 65535, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp_frame(src: str, sport: int, dst: str, dport: int, seq: int, ack: int, flags: int,
              payload: bytes = b"") -> bytes:
    """One Ethernet frame carrying one TCP segment."""
    return ether(ipv4(src, dst, 6, tcp(sport, dport, seq, ack, flags, payload)))


def udp_frame(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    return ether(ipv4(src, dst, 17, udp(sport, dport, payload)))


class TcpConversation:
    """A client and a server exchanging bytes over one TCP connection (handshake optional)."""

    def __init__(self, client: tuple[str, int] = ("10.0.0.1", 40000),
                 server: tuple[str, int] = ("10.0.0.2", 4059), handshake: bool = True) -> None:
        self.client, self.server = client, server
        self.seq = {True: 1000, False: 5000}  # next sequence number, key: sent by the client
        self.frames: list[bytes] = []
        if handshake:
            self.frames.append(self._frame(True, SYN, seq=self.seq[True] - 1))
            self.frames.append(self._frame(False, SYN | ACK, seq=self.seq[False] - 1))
            self.frames.append(self._frame(True, ACK))

    def _frame(self, from_client: bool, flags: int, payload: bytes = b"",
               seq: int | None = None) -> bytes:
        a, b = (self.client, self.server) if from_client else (self.server, self.client)
        return tcp_frame(a[0], a[1], b[0], b[1], self.seq[from_client] if seq is None else seq,
                         self.seq[not from_client], flags, payload)

    def send(self, from_client: bool, payload: bytes, flags: int = PSH | ACK,
             seq_offset: int = 0) -> bytes:
        """A segment with `payload`; `seq_offset` moves its sequence number (holes, overlaps)."""
        frame = self._frame(from_client, flags, payload, self.seq[from_client] + seq_offset)
        self.frames.append(frame)
        self.seq[from_client] += len(payload)
        return frame

    def close(self) -> None:
        self.frames.append(self._frame(True, FIN | ACK))
        self.frames.append(self._frame(False, FIN | ACK))
