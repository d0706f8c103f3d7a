"""TCP reassembly: synthetic segment lists built with Scapy, written to a pcap, read back."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap
from test_framing import hdlc

from dissector.analysis.capture import iter_pdus
from dissector.sources.capture import read_capture
from dissector.sources.tcp import Delivery, Gap, TcpReassembler, TcpStream
from dissector.stages import LinkEvent, Pdu, Record
from layers.expert import Finding

CLIENT, SERVER = "10.0.0.2", "10.0.0.1"
CPORT = 40312
C_ISN, S_ISN = 1000, 5000_000


def wrapper(apdu: bytes, src: int = 16, dst: int = 1) -> bytes:
    return (b"\x00\x01" + src.to_bytes(2, "big") + dst.to_bytes(2, "big")
            + len(apdu).to_bytes(2, "big") + apdu)


AARQ = wrapper(bytes.fromhex("601da109060760857405080101be10040e01000000065f1f0400001e5dffff"))
AARE = wrapper(bytes.fromhex("6129a109060760857405080101a203020100a305a103020100be10040e0800065f1f"
                             "0400001e1d04000007"), 1, 16)
GET = wrapper(bytes.fromhex("c001c100080000010000ff0200"))
GET_RSP = wrapper(bytes.fromhex("c401c100090c07ea0b180208290900000000"), 1, 16)
RLRQ = wrapper(bytes.fromhex("6200"))


class Conv:
    """A client/server conversation; offsets are positions in each direction's byte stream."""

    def __init__(self, sport: int = CPORT, dport: int = 4059, client: str = CLIENT,
                 server: str = SERVER, ipv6: bool = False) -> None:
        self.sport, self.dport, self.client, self.server = sport, dport, client, server
        self.ipv6 = ipv6
        self.pkts: list[Packet] = []
        self.c_seq, self.s_seq = C_ISN + 1, S_ISN + 1

    def _pkt(self, from_client: bool, seq: int, ack: int, flags: str, data: bytes) -> Packet:
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        sport, dport = (self.sport, self.dport) if from_client else (self.dport, self.sport)
        ip = IPv6(src=src, dst=dst) if self.ipv6 else IP(src=src, dst=dst)
        p = Ether() / ip / TCP(sport=sport, dport=dport, seq=seq % 2**32, ack=ack % 2**32,
                               flags=flags)
        if data:
            p = p / Raw(data)
        p.time = 1_700_000_000 + len(self.pkts) * 0.01
        self.pkts.append(p)
        return p

    def handshake(self) -> Conv:
        self._pkt(True, C_ISN, 0, "S", b"")
        self._pkt(False, S_ISN, C_ISN + 1, "SA", b"")
        self._pkt(True, C_ISN + 1, S_ISN + 1, "A", b"")
        return self

    def c(self, offset: int, data: bytes, flags: str = "PA", ack: int = 0) -> Conv:
        self._pkt(True, C_ISN + 1 + offset, S_ISN + 1 + ack, flags, data)
        return self

    def s(self, offset: int, data: bytes, flags: str = "PA", ack: int = 0) -> Conv:
        self._pkt(False, S_ISN + 1 + offset, C_ISN + 1 + ack, flags, data)
        return self

    def write(self, path: Path) -> Path:
        wrpcap(str(path), self.pkts)
        return path


def pdus(path: Path, ports: dict[int, str] | None = None) -> list:
    return list(iter_pdus(path, ports))


def only(items: list, kind: type) -> list:
    return [i for i in items if isinstance(i, kind)]


def test_out_of_order_retransmitted_overlapping_split_and_packed(tmp_path: Path) -> None:
    stream = AARQ + GET + RLRQ  # several PDUs per segment, PDUs split across segments
    conv = Conv().handshake()
    conv.c(0, stream[0:10])  # frame 4
    conv.c(30, stream[30:50])  # 5: out of order
    conv.c(10, stream[10:30])  # 6: fills the hole
    conv.c(10, stream[10:30])  # 7: retransmission
    conv.c(25, stream[25:45])  # 8: overlaps what was delivered
    conv.c(50, stream[50:])  # 9
    conv.s(0, AARE, ack=len(stream))  # 10
    items = pdus(conv.write(tmp_path / "t.pcap"))
    got = only(items, Pdu)
    assert [p.data for p in got] == [AARQ, GET, RLRQ, AARE]
    assert [p.transport for p in got] == ["wrapper"] * 4
    assert got[0].frames == [4, 5, 6]  # 5 came before 6 but holds AARQ's last bytes
    assert got[1].frames == [5, 9]
    assert got[2].frames == [9]
    assert [p.direction for p in got] == ["client->server"] * 3 + ["server->client"]
    assert got[0].link == f"tcp {CLIENT}:{CPORT}-{SERVER}:4059"
    assert not only(items, Finding)
    assert isinstance(items[0], LinkEvent) and items[0].kind == "open"
    assert items[0].frame_no == 1


def test_fin_and_rst_close_the_link(tmp_path: Path) -> None:
    conv = Conv().handshake()
    conv.c(0, AARQ).s(0, AARE, ack=len(AARQ))
    conv.c(len(AARQ), b"", "FA").s(len(AARE), b"", "FA", ack=len(AARQ) + 1)
    conv.c(len(AARQ) + 1, b"", "A", ack=len(AARE) + 1)  # late ACK: does not reopen
    items = pdus(conv.write(tmp_path / "t.pcap"))
    kinds = [(i.kind, i.frame_no) for i in only(items, LinkEvent)]
    assert kinds == [("open", 1), ("close", 7)]
    assert isinstance(items[-1], LinkEvent)

    conv = Conv().handshake()
    conv.c(0, AARQ).s(0, b"", "R")
    items = pdus(conv.write(tmp_path / "r.pcap"))
    assert [i.kind for i in only(items, LinkEvent)] == ["open", "close"]
    assert len(only(items, Pdu)) == 1


def test_data_after_rst_reopens_and_retransmissions_after_close_are_dropped(
        tmp_path: Path) -> None:
    conv = Conv().handshake()
    conv.c(0, AARQ).s(0, b"", "R")
    conv.c(0, AARQ)  # retransmission after the reset: nothing new
    conv.c(len(AARQ), GET)  # new data: the peer keeps talking, show it
    items = pdus(conv.write(tmp_path / "t.pcap"))
    assert [p.data for p in only(items, Pdu)] == [AARQ, GET]
    assert [i.kind for i in only(items, LinkEvent)] == ["open", "close", "open"]


def test_reused_four_tuple_starts_a_new_link(tmp_path: Path) -> None:
    first = Conv().handshake().c(0, AARQ)
    second = Conv()
    second.pkts = first.pkts
    second._pkt(True, C_ISN + 7777, 0, "S", b"")
    second._pkt(True, C_ISN + 7778, S_ISN + 1, "PA", GET)
    items = pdus(second.write(tmp_path / "t.pcap"))
    assert [(i.kind, i.frame_no) for i in only(items, LinkEvent)] == [
        ("open", 1), ("close", 5), ("open", 5)]
    assert [p.data for p in only(items, Pdu)] == [AARQ, GET]


def test_capture_started_mid_stream(tmp_path: Path) -> None:
    conv = Conv()  # no handshake: the client's first captured segment starts inside AARQ
    conv.c(0, AARQ[12:] + GET)
    conv.s(0, GET_RSP, ack=len(AARQ) - 12 + len(GET))
    items = pdus(conv.write(tmp_path / "t.pcap"))
    got = only(items, Pdu)
    assert [p.data for p in got] == [GET, GET_RSP]
    assert got[0].direction == "client->server"  # 4059 is the server side
    notes = only(items, Finding)
    assert [n.code for n in notes] == ["wrapper.skipped-bytes"]
    assert str(len(AARQ) - 12) in notes[0].message
    assert [i.kind for i in only(items, LinkEvent)] == ["open"]


def test_unknown_port_taken_by_hdlc_heuristic_and_lower_port_is_server(tmp_path: Path) -> None:
    snrm = bytes.fromhex("7ea008022323930d577e")  # interop g1 capture
    ua = hdlc(b"\x23", b"\x02\x23", 0x73, bytes.fromhex("818012050180060180070400000001"
                                                       "080400000001"))
    conv = Conv(sport=52022, dport=4061)  # no SYN, no DLMS port
    conv.s(0, ua, ack=len(snrm))  # the server speaks first in the capture
    conv.c(len(snrm), snrm)
    items = pdus(conv.write(tmp_path / "t.pcap"))
    got = only(items, Pdu)
    assert [p.data for p in got] == [ua, snrm]
    assert [p.direction for p in got] == ["server->client", "client->server"]
    assert got[0].link == f"tcp {CLIENT}:52022-{SERVER}:4061"
    assert all(p.transport == "hdlc" for p in got)


def test_port_override_and_non_dlms_traffic(tmp_path: Path) -> None:
    tls = bytes.fromhex("170303002000112233445566778899aabbccddeeff00112233445566778899aabbcc")
    conv = Conv(sport=50000, dport=443).handshake().c(0, tls).s(0, tls)
    path = conv.write(tmp_path / "tls.pcap")
    assert pdus(path) == []
    # a port override takes whatever the port carries, with the given framing
    conv = Conv(sport=50000, dport=7000).handshake().c(0, AARQ[:4]).c(4, AARQ[4:])
    items = pdus(conv.write(tmp_path / "o.pcap"), {7000: "wrapper"})
    assert [p.data for p in only(items, Pdu)] == [AARQ]


def test_gap_acknowledged_by_peer_is_reported_and_framing_resumes(tmp_path: Path) -> None:
    stream = AARQ + GET + RLRQ
    lost = len(AARQ) + 5
    conv = Conv().handshake()
    conv.c(0, stream[:lost])  # 4
    # bytes [lost, len(AARQ)+len(GET)) are never captured
    conv.c(len(AARQ) + len(GET), RLRQ)  # 5: waits behind the hole
    conv.s(0, AARE, ack=len(stream))  # 6: the server acknowledged everything
    conv.s(len(AARE), GET_RSP, ack=len(stream))  # 7
    items = pdus(conv.write(tmp_path / "t.pcap"))
    got = only(items, Pdu)
    assert [p.data for p in got] == [AARQ, AARE, RLRQ, GET_RSP]
    gaps = [n for n in only(items, Finding) if n.code == "tcp.gap"]
    assert len(gaps) == 1 and gaps[0].direction == "client->server"
    assert f"{len(GET) - 5} byte(s)" in gaps[0].message
    skipped = [n for n in only(items, Finding) if n.code == "wrapper.skipped-bytes"]
    assert len(skipped) == 1 and "skipped 5 byte(s)" in skipped[0].message


def test_gap_that_never_fills_is_reported_at_the_end(tmp_path: Path) -> None:
    conv = Conv().handshake()
    conv.c(0, AARQ)
    conv.c(len(AARQ) + 100, GET)  # only one direction captured, no ACK tells
    items = pdus(conv.write(tmp_path / "t.pcap"))
    assert [p.data for p in only(items, Pdu)] == [AARQ, GET]
    assert [n.code for n in only(items, Finding)] == ["tcp.gap"]
    assert "100 byte(s)" in only(items, Finding)[0].message


def test_ipv6_link_id(tmp_path: Path) -> None:
    conv = Conv(client="2001:db8::2", server="2001:db8::1", ipv6=True).handshake().c(0, AARQ)
    items = pdus(conv.write(tmp_path / "t.pcap"))
    assert only(items, Pdu)[0].link == f"tcp [2001:db8::2]:{CPORT}-[2001:db8::1]:4059"


def test_stream_wraps_around_sequence_space_and_frees_delivered_bytes() -> None:
    s = TcpStream()
    isn = 2**32 - 10
    s.syn(isn)
    out = s.segment((isn + 1) % 2**32, b"A" * 8, 1, 1.0)
    out += s.segment((isn + 9 + 20) % 2**32, b"C" * 5, 3, 3.0)  # out of order, past the wrap
    assert s.buffered == 5
    out += s.segment((isn + 9) % 2**32, b"B" * 20, 2, 2.0)
    assert [(d.frame_no, d.data) for d in out if isinstance(d, Delivery)] == [
        (1, b"A" * 8), (2, b"B" * 20), (3, b"C" * 5)]
    assert s.buffered == 0 and not s._waiting and not s._starts
    assert s.delivered == 33
    assert s.segment((isn + 1) % 2**32, b"A" * 8, 4, 4.0) == []
    assert s.dropped == 8


def test_stream_buffer_limit_gives_up_the_hole() -> None:
    s = TcpStream(max_buffered=100)
    s.segment(0, b"x" * 10, 1, 1.0)
    out = s.segment(50, b"y" * 60, 2, 2.0)
    assert out == []
    out = s.segment(110, b"z" * 60, 3, 3.0)
    gap = [g for g in out if isinstance(g, Gap)]
    assert len(gap) == 1 and gap[0].missing == 40 and "more than 100" in gap[0].reason
    assert [d.data[:1] for d in out if isinstance(d, Delivery)] == [b"y", b"z"]
    assert s.buffered == 0


def test_reassembler_forgets_closed_and_ignored_connections() -> None:
    r = TcpReassembler()
    out = r.packet(1, 0.0, CLIENT, 1234, SERVER, 4059, C_ISN, 0, 0x02, b"")
    assert [type(i) for i in out] == [LinkEvent]
    out = r.packet(2, 0.0, CLIENT, 1234, SERVER, 4059, C_ISN + 1, 0, 0x18, AARQ)
    assert [type(i) for i in out] == [Record]
    assert r.packet(3, 0.0, CLIENT, 1234, SERVER, 4059, C_ISN + 1 + len(AARQ), 0, 0x04, b"")
    assert r.connections == 0
    for n in range(10):  # not DLMS: dropped after a few in-order chunks, nothing kept
        r.packet(10 + n, 0.0, CLIENT, 2000, SERVER, 8080, 100 + n * 4, 0, 0x18, b"HTTP")
    assert r.connections == 1
    conn = next(iter(r._conns.values()))
    assert conn.taken is False and not conn.streams


def test_read_capture_records_of_tcp(tmp_path: Path) -> None:
    conv = Conv().handshake().c(0, AARQ[:7]).c(7, AARQ[7:])
    items = list(read_capture(conv.write(tmp_path / "t.pcap")))
    records = only(items, Record)
    assert [(r.frame_no, r.data) for r in records] == [(4, AARQ[:7]), (5, AARQ[7:])]
    assert records[0].transport_hint is None and not records[0].datagram
