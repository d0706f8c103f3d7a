"""Resource bounds: every kind of input that could make the dissector hold more and more has a
limit, reports reaching it as a finding, and frees what it held.

Covered: A-XDR nesting and declared lengths (also in test_robust_layers), general-block-transfer
floods, get-response-with-datablock floods, endless HDLC segments, TCP streams that never
complete (holes, too many connections), streams without framing. Memory is measured with
`tracemalloc` where it matters.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc

from conftest import ROOT
from scapy.compat import raw

sys.path.insert(0, str(ROOT / "fuzz"))
import capgen
import harness

from dissector.analysis.pipeline import Dissector
from dissector.analysis.reassembly import MAX_APDU, HdlcReassembler
from dissector.sources.tcp import ACK, SYN, TcpReassembler
from dissector.stages import LinkEvent, Pdu, Record
from layers import HDLC
from layers.apdu.gbt import GeneralBlockTransfer
from layers.expert import Finding
from layers.fields import encode_length

PSH = 0x08
GET = bytes.fromhex("C001C100080000010000FF0200")


def codes(records) -> list[str]:
    """Findings of records, once the dissector has finished with them."""
    return [f.code for rec in list(records) for f in rec.all_findings()]


def held(fn) -> tuple[object, int]:
    """Run `fn`, return its result and the memory still allocated afterwards (bytes)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = fn()
        gc.collect()
        return out, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


# ------------------------------------------------------------------- general-block-transfer

def gbt(number: int, data: bytes, last: bool = False) -> bytes:
    return raw(GeneralBlockTransfer(last_block=int(last), block_number=number & 0xFFFF,
                                    block_data=data))


def test_block_transfer_flood_is_dropped_with_a_finding() -> None:
    dis = Dissector()
    block = bytes(60_000)

    def run() -> list[str]:
        found = []
        for n in range(1, MAX_APDU // len(block) + 3):
            found += codes(dis.feed(Pdu(gbt(n, block), "raw", [n], direction="server->client")))
        return found

    found, kept = held(run)
    assert "gbt.flood" in found
    # what was gathered is freed; the blocks after the flood start over
    assert sum(len(p.data) for _, p in dis.blocks.pending.values()) < 3 * len(block)
    assert kept < MAX_APDU // 2, kept


def test_repeated_and_lost_blocks_are_findings_and_hold_nothing_extra() -> None:
    dis = Dissector()
    found = []
    for n in [1, 1, 1, 5, 5, 2, 70000 % 0xFFFF]:
        found += codes(dis.feed(Pdu(gbt(n, b"\x01" * 100), "raw", [n])))
    assert "gbt.repeated-block" in found and "gbt.lost-block" in found
    assert "gbt.incomplete" in [f.code for f in dis.finish()]
    assert not dis.blocks.pending


def test_block_findings_reach_the_output() -> None:
    texts = harness.run_decode([gbt(1, b"\x01" * 10), gbt(1, b"\x01" * 10), gbt(5, b"\x01" * 10)],
                               keyed=False, modes=("summary",))
    out = harness.output_text(texts)
    assert "gbt.repeated-block" in out and "gbt.lost-block" in out


def test_block_transfer_nested_in_block_transfer() -> None:
    data = GET
    for _ in range(1500):
        data = gbt(1, data, last=True)
    texts = harness.run_decode([data], keyed=False, modes=("summary",))
    out = harness.output_text(texts)
    assert len(out) < 200_000, len(out)


# ------------------------------------------------------------------- datablock responses

def datablock(number: int, last: bool, data: bytes) -> bytes:
    """get-response-with-datablock, raw-data choice."""
    return (b"\xc4\x02\xc1" + bytes([int(last)]) + number.to_bytes(4, "big") + b"\x00"
            + encode_length(len(data)) + data)


def test_datablock_flood_holds_nothing() -> None:
    """1,000 datablock responses of 2 KB (a server that never sends the last one): records
    are not kept, so memory does not grow with the flood."""
    dis = Dissector()
    block = bytes(range(256)) * 8

    def run() -> int:
        count = 0
        for n in range(1, 1001):
            for _rec in dis.feed(Pdu(datablock(n, False, block), "raw", [n], float(n),
                                      "tcp a-b", "server->client")):
                count += 1
        return count

    count, kept = held(run)
    assert count == 1000
    assert kept < 400_000, kept


def test_malformed_datablock_is_a_finding() -> None:
    dis = Dissector()
    bad = datablock(1, True, b"\x01\x02")[:-1] + b"\x09\x84\xff\xff\xff\xff"
    recs = list(dis.feed(Pdu(bad, "raw", [1], direction="server->client")))
    assert recs and codes(recs)


# --------------------------------------------------------------------------- HDLC segments

def segment(info: bytes, more: bool, dest: int = 17) -> bytes:
    return raw(HDLC(destination=(1, dest), source=16, control=0x10, segmentation=int(more),
                    information=info))


def _endless_segments() -> list[bytes]:
    chunk = b"\x5a" * 2000
    return [segment(b"\xe6\xe6\x00" + chunk, True)] + \
        [segment(chunk, True) for _ in range(MAX_APDU // len(chunk) + 2)]


def test_endless_hdlc_segments_are_dropped_and_freed() -> None:
    dis = Dissector()

    def run() -> None:
        for n, frame in enumerate(_endless_segments()):
            list(dis.feed(Pdu(frame, "hdlc", [n])))

    _, kept = held(run)
    assert sum(len(p.data) for p in dis.hdlc.pending.values()) < 10_000
    assert kept < MAX_APDU // 2, kept


def test_endless_hdlc_segments_are_reported() -> None:
    out = harness.output_text(harness.run_decode(_endless_segments(), keyed=False,
                                                 modes=("summary",)))
    assert "hdlc.segment-flood" in out


def test_segments_pending_on_many_addresses_are_bounded() -> None:
    reasm = HdlcReassembler()
    piece = bytes(16_000)
    for key in range(40):
        reasm.feed(("serial", bytes([key * 2 + 1]), b"\x21"), b"\xe6\xe6\x00" + piece, True, 0)
        for n in range(MAX_APDU // len(piece) - 1):
            reasm.feed(("serial", bytes([key * 2 + 1]), b"\x21"), piece, True, n)
    assert sum(len(p.data) for p in reasm.pending.values()) <= 8 * MAX_APDU


def test_state_per_link_is_bounded() -> None:
    dis = Dissector()
    for n in range(3000):
        list(dis.feed(Pdu(GET, "raw", [n], float(n), f"udp 10.0.{n >> 8}.{n & 255}:1-x:4059",
                           "client->server")))
    assert len(dis.contexts) <= 1024 and len(dis.tracker.associations) <= 1024


# ----------------------------------------------------------------------------------- TCP

def test_hole_that_never_fills_is_given_up_at_the_bound() -> None:
    tcp = TcpReassembler(max_buffered=100_000)
    out = tcp.packet(1, 0.0, "10.0.0.1", 40000, "10.0.0.2", 4059, 1000, 0, SYN, b"")
    for n in range(40):  # every segment lands 10 bytes beyond the hole
        out += tcp.packet(n + 2, 0.0, "10.0.0.1", 40000, "10.0.0.2", 4059,
                          1011 + n * 5000, 0, PSH, b"\x01" * 5000)
    gaps = [o for o in out if isinstance(o, Finding) and o.code == "tcp.gap"]
    assert gaps and "more than 100000 bytes" in gaps[0].message
    assert tcp.buffered <= 100_000


def test_too_many_connections_are_evicted_with_a_note() -> None:
    from dissector.sources.tcp import MAX_CLOSED

    tcp = TcpReassembler(max_connections=64, max_total_buffered=200_000)
    out: list = []

    def connections(first: int, count: int, keep: bool = True) -> None:
        for n in range(first, first + count):
            ip = f"10.{n >> 16}.{n >> 8 & 255}.{n & 255}"
            got = tcp.packet(n, 0.0, ip, 40000, "10.0.0.2", 4059, 1000, 0, SYN, b"")
            got += tcp.packet(n, 0.0, ip, 40000, "10.0.0.2", 4059, 1101, 0, PSH | ACK,
                              b"\x01" * 3000)  # waits behind a 100-byte hole
            if keep:
                out.extend(got)

    gc.collect()
    tracemalloc.start()
    try:
        connections(0, MAX_CLOSED + 1000)
        connections(100_000, 3000, keep=False)  # (the tables settle at their final size)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        connections(200_000, 2000, keep=False)  # 2,000 more: memory stays flat
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert tcp.connections <= 64
    assert tcp.buffered <= 200_000
    evicted = [o for o in out if isinstance(o, Finding) and o.code == "tcp.evicted"]
    assert len(evicted) == MAX_CLOSED + 1000 - 64
    closes = [o for o in out if isinstance(o, LinkEvent) and o.kind == "close"]
    assert len(closes) >= len(evicted)  # the stream cutter and the dissector free the link too
    assert grown < 300_000, grown


def test_total_bytes_behind_holes_are_bounded() -> None:
    tcp = TcpReassembler(max_connections=1000, max_total_buffered=500_000)
    out = []
    for n in range(100):
        ip = f"10.2.0.{n}"
        out += tcp.packet(n, 0.0, ip, 40000, "10.0.0.2", 4059, 1000, 0, SYN, b"")
        out += tcp.packet(n, 0.0, ip, 40000, "10.0.0.2", 4059, 1101, 0, PSH, b"\x01" * 20_000)
        assert tcp.buffered <= 500_000
    assert any(isinstance(o, Record) for o in out)  # given-up holes deliver what waited
    assert tcp.connections == 100


def test_unfinished_pdu_at_the_end_is_reported(tmp_path) -> None:
    """A TCP stream whose wrapper header announces 65,535 bytes that never come."""
    from dissector.analysis.capture import iter_pdus

    conv = capgen.TcpConversation()
    pdu = b"\x00\x01\x00\x10\x00\x01\xff\xff" + GET
    conv.send(True, pdu)
    path = tmp_path / "unfinished.pcap"
    path.write_bytes(capgen.pcap(conv.frames))
    notes = [i for i in iter_pdus(str(path)) if isinstance(i, Finding)]
    assert any(f"{len(pdu)} byte(s)" in n.message for n in notes), notes


def test_noise_datagrams_on_the_dlms_port_are_counted_not_noted_one_by_one(tmp_path) -> None:
    from dissector.sources.capture import read_capture
    from dissector.sources.frames import MAX_UDP_NOTES

    frames = [capgen.udp_frame("10.0.0.1", 40000, "10.0.0.2", 4059, b"\x55" * 30)] * 1000
    path = tmp_path / "noise.pcap"
    path.write_bytes(capgen.pcap(frames))
    notes = [i for i in read_capture(str(path)) if isinstance(i, Finding)]
    assert len(notes) == MAX_UDP_NOTES + 1
    assert f"{1000 - MAX_UDP_NOTES} more UDP datagram(s)" in notes[-1].message


def test_directions_learned_on_a_serial_line_are_bounded() -> None:
    """A serial line flooded with frames between ever new address pairs."""
    from dissector.analysis.directions import MAX_LEARNED, DirectionLearner

    learner = DirectionLearner()
    learned = learner.learned
    for n in range(3 * MAX_LEARNED):
        frame = segment(b"\xe6\xe6\x00" + GET, False, dest=n % 0x3FFF)
        assert learner.direction("serial 1", frame) == "client->server"
        assert len(learned) <= MAX_LEARNED + 1


def test_fragment_floods_are_given_up(tmp_path) -> None:
    """Endless overlapping IPv4 fragments of one datagram, and thousands of 8-byte ones."""
    from dissector.sources.capture import read_capture
    from dissector.sources.frames import MAX_FRAGMENT_PIECES

    frames = []
    for n in range(MAX_FRAGMENT_PIECES + 50):
        offset = (n * 8) % 8000 if n % 2 else n  # overlapping, then tiny distinct pieces
        frames.append(capgen.ether(capgen.ipv4("10.0.0.1", "10.0.0.2", 17, b"\x01" * 1400,
                                               ident=7, frag=0x2000 | (offset & 0x1FFF))))
    path = tmp_path / "frags.pcap"
    path.write_bytes(capgen.pcap(frames))
    notes = [i for i in read_capture(str(path)) if isinstance(i, Finding)]
    assert notes and all(n.code == "ip.fragments-incomplete" for n in notes)
    assert any(f"more than {MAX_FRAGMENT_PIECES} fragments" in n.message for n in notes)
