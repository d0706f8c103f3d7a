"""Capture sources: the shared corpus read in place, link types, IP, pcapng flags, errors."""

from __future__ import annotations

import io
import itertools
import struct
from pathlib import Path

import pytest
from conftest import CORPUS, corpus_path
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw
from test_framing import GET, SNRM, UA, hdlc
from test_tcp import AARE, AARQ, GET_RSP

from dissector.analysis.capture import iter_pdus
from dissector.analysis.directions import DirectionLearner
from dissector.sources.capture import CaptureError, read_capture
from dissector.stages import LinkEvent, Pdu, Record
from layers.crc import crc16
from layers.expert import Finding

CAPTURES = sorted(p.name for p in CORPUS.glob("*.pcap*")) if CORPUS.exists() else []
INTEROP = sorted(p.name for p in (CORPUS / "interop").iterdir()) if CORPUS.exists() else []
WRAPPER_SCENARIOS = [d for d in INTEROP if "hdlc" not in d]
HDLC_SCENARIOS = [d for d in INTEROP if "hdlc" in d]

#: Where our count differs from the manifest's `dlms_pdus`, and why (checked by hand).
COUNT_DEVIATIONS = {
    # frame 72 repeats frame 71 (same sequence number, the RLRQ): a TCP retransmission
    "Circutor_dlms-analysis_dlms.pcap": 46,
    # the server resets the connection (frame 12) while the client keeps sending; one
    # set-request frame straddles the reset (frames 13/15) and is reported as cut
    "Circutor_dlms-analysis_data1.pcapng": 99,
    # 161 + the 5 frames the client sends after the server's FIN/RST (frame 283) + frame
    # 278, whose length field is wrong but which ends at a flag with a valid FCS
    "Circutor_dlms-analysis_data7.pcapng": 167,
}
#: Manifest items that count HDLC frames (one per datagram), not APDUs.
COUNTS_FRAMES = {"bearxiong99_sample.pcap"}


def only(items: list, kind: type) -> list:
    return [i for i in items if isinstance(i, kind)]


def directions(pdus: list[Pdu]) -> list[str]:
    """The direction the analysis gives each PDU: its own (the source's) when known, else, for
    HDLC frames, what the frame's bytes and its address pair's history tell."""
    learner = DirectionLearner()
    return [learner.direction(p.link, p.data) if p.direction == "unknown" and
            p.transport == "hdlc" else p.direction for p in pdus]


def apdu_count(pdus: list[Pdu]) -> int:
    """APDUs and frames without segments: what the manifest counts (HDLC segments of one
    APDU, format A8..AF, count once)."""
    return sum(1 for p in pdus if p.transport != "hdlc" or not p.data[1] & 0x08)


@pytest.mark.parametrize("name", CAPTURES)
def test_corpus_capture_reads(name: str, manifest: dict) -> None:
    path = corpus_path(name)
    items = list(iter_pdus(path))
    pdus = only(items, Pdu)
    assert all(isinstance(i, Pdu | LinkEvent | Finding) for i in items)
    frames = [f for p in pdus for f in p.frames]
    assert all(f >= 1 for f in frames)
    counts = {i["pcap_file"]: i["dlms_pdus"] for i in manifest["items"] if i.get("pcap_file")}
    if name in counts:
        count = len(pdus) if name in COUNTS_FRAMES else apdu_count(pdus)
        assert count == COUNT_DEVIATIONS.get(name, counts[name])


@pytest.mark.parametrize("name", INTEROP)
def test_interop_capture_reads(name: str) -> None:
    for path in sorted(corpus_path("interop", name).glob("capture.pcap*")):
        assert only(list(iter_pdus(path)), Pdu)


def tsv(name: str) -> list[dict]:
    lines = corpus_path("interop", name, "apdus.tsv").read_text().splitlines()
    cols = lines[0].lstrip("#").split("\t")
    rows = [dict(zip(cols, line.split("\t"), strict=False)) for line in lines[1:] if line]
    for row in rows:
        row["frames"] = [int(f) for f in row["frames"].split(",")]
    return rows


DIRECTIONS = {"C->S": "client->server", "S->C": "server->client"}


@pytest.mark.parametrize("name", WRAPPER_SCENARIOS)
def test_interop_wrapper_apdus_match(name: str) -> None:
    rows = tsv(name)
    pdus = only(list(iter_pdus(corpus_path("interop", name, "capture.pcap"))), Pdu)
    assert len(pdus) == len(rows)
    for row in rows:
        (index,) = row["frames"]
        pdu = pdus[index]
        assert pdu.transport == "wrapper"
        assert pdu.data[8:].hex().upper() == row["apdu_hex"].upper()
        assert int.from_bytes(pdu.data[6:8], "big") == len(pdu.data) - 8
        assert pdu.direction == DIRECTIONS[row["dir"]]


def hdlc_parts(frame: bytes) -> tuple[int, bytes, bool]:
    """(control, information field, segmented) of a CRC-checked frame."""
    assert frame[0] == 0x7E and frame[-1] == 0x7E
    length = (frame[1] & 0x07) << 8 | frame[2]
    assert len(frame) == length + 2
    assert crc16(frame[1:-3]) == int.from_bytes(frame[-3:-1], "little"), "FCS"
    p = 3
    for _ in range(2):
        while not frame[p] & 1:
            p += 1
        p += 1
    control = frame[p]
    header_end = p + 1
    info = b""
    if length + 1 > header_end + 2:
        assert crc16(frame[1:header_end]) == int.from_bytes(frame[header_end:header_end + 2],
                                                             "little"), "HCS"
        info = frame[header_end + 2 : -3]
    return control, info, bool(frame[1] & 0x08)


@pytest.mark.parametrize("name", HDLC_SCENARIOS)
def test_interop_hdlc_frames_reassemble_to_the_apdus(name: str) -> None:
    rows = tsv(name)
    for path in sorted(corpus_path("interop", name).glob("capture.pcap*")):
        pdus = only(list(iter_pdus(path)), Pdu)
        parts = [hdlc_parts(p.data) for p in pdus]
        dirs = directions(pdus)
        i_frames = {i for i, (control, _, _) in enumerate(parts) if not control & 1}
        assert i_frames == {f for row in rows for f in row["frames"]}
        for row in rows:
            info = b"".join(parts[f][1] for f in row["frames"])
            assert [parts[f][2] for f in row["frames"]] == [True] * (len(row["frames"]) - 1) + [
                False]
            assert info[:3] in (b"\xe6\xe6\x00", b"\xe6\xe7\x00")
            assert info[3:].hex().upper() == row["apdu_hex"].upper()
            assert {dirs[f] for f in row["frames"]} == {DIRECTIONS[row["dir"]]}


def test_serial_pcapng_flags_and_comments_agree_with_address_inference() -> None:
    base = corpus_path("interop", "g3_hdlc_serial_pty_gmac")
    with_flags = only(list(iter_pdus(base / "capture.pcapng")), Pdu)
    inferred = only(list(iter_pdus(base / "capture.pcap")), Pdu)
    assert [p.data for p in with_flags] == [p.data for p in inferred]
    assert directions(with_flags) == directions(inferred)
    assert {p.link for p in with_flags} == {"serial 1"}
    assert with_flags[0].comment == "C->S client->meter"
    assert with_flags[1].comment == "S->C meter->client"
    assert [p.frames for p in with_flags] == [[n] for n in range(1, len(with_flags) + 1)]


def test_serial_record_without_flags_direction_from_addresses() -> None:
    pdus = only(list(iter_pdus(corpus_path("Dennisonius_sample_serial.pcap"))), Pdu)
    assert directions(pdus) == ["client->server", "server->client"] * 5


def test_udp_hdlc_and_llc_datagrams() -> None:
    pdus = only(list(iter_pdus(corpus_path("bearxiong99_sample.pcap"))), Pdu)
    assert len(pdus) == 51
    raw = [p for p in pdus if p.transport == "raw"]
    assert raw[0].data[:2] == b"\x60\x36"  # AARQ after the 4-32 LLC 90 01 01
    assert all(p.data[0] == 0x7E for p in pdus if p.transport == "hdlc")
    assert pdus[0].link == "udp 10.1.1.1:0-10.2.2.2:4059"
    assert pdus[0].data == bytes.fromhex("7ea0070303938c117e")  # Ethernet padding is not
    assert directions(pdus)[0] == "client->server"  # source port 0: SNRM tells


# --- synthetic captures (written here byte by byte) ---------------------------------------


def write_pcap(path: Path, linktype: int, frames: list[bytes], nano: bool = False,
               caplen_extra: int = 0) -> Path:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for n, data in enumerate(frames):
        out.append(struct.pack("<IIII", 1_700_000_000 + n, 250, len(data) + caplen_extra,
                               len(data)) + data)
    path.write_bytes(b"".join(out))
    return path


def _block(kind: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def write_pcapng(path: Path, linktype: int,
                 records: list[tuple[bytes, int | None, str | None]]) -> Path:
    """Records: (data, EPB direction flag, comment)."""
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           _block(1, struct.pack("<HHI", linktype, 0, 65535))]
    for n, (data, flags, comment) in enumerate(records):
        ts = (1_700_000_000 + n) * 1_000_000
        body = struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
        body += data + b"\x00" * (-len(data) % 4)
        opts = b""
        if comment:
            opts += _option(1, comment.encode())
        if flags is not None:
            opts += _option(2, struct.pack("<I", flags))
        if opts:
            body += opts + _option(0, b"")
        out.append(_block(6, body))
    path.write_bytes(b"".join(out))
    return path


def udp(payload: bytes, sport: int = 40000, dport: int = 4059) -> bytes:
    return bytes(IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=sport, dport=dport)
                 / Raw(payload))


def udp6(payload: bytes, sport: int = 40000, dport: int = 4059) -> bytes:
    return bytes(IPv6(src="2001:db8::2", dst="2001:db8::1") / UDP(sport=sport, dport=dport)
                 / Raw(payload))


def test_link_types(tmp_path: Path) -> None:
    ip4, ip6 = udp(AARQ), udp6(AARQ)
    eth = Ether(src="00:00:00:00:00:02", dst="00:00:00:00:00:01")
    cases = {
        1: [bytes(eth / Dot1AD(vlan=5) / Dot1Q(vlan=7) / IP(ip4)),
            bytes(eth / IPv6(ip6)),
            bytes(eth / ARP())],
        113: [struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 6 + b"\0\0", 0x0800) + ip4],
        276: [struct.pack("!HHIHBB8s", 0x86DD, 0, 2, 1, 0, 6, b"\x02" * 8) + ip6],
        0: [struct.pack("<I", 2) + ip4, struct.pack("<I", 30) + ip6],
        108: [struct.pack("!I", 2) + ip4],
        101: [ip4, ip6],
        12: [ip4],
        14: [ip6],
        228: [ip4],
        229: [ip6],
    }
    for linktype, frames in cases.items():
        path = write_pcap(tmp_path / f"l{linktype}.pcap", linktype, frames)
        records = only(list(read_capture(path)), Record)
        assert [r.data for r in records] == [AARQ] * len(records), linktype
        assert len(records) == len([f for f in frames if b"\x08\x06" not in f[12:14]])
        assert records[0].datagram and records[0].transport_hint == "wrapper"
        assert records[0].direction == "client->server"
    record = only(list(read_capture(tmp_path / "l1.pcap")), Record)[1]
    assert record.link == "udp [2001:db8::2]:40000-[2001:db8::1]:4059"


def test_ipv4_options_and_fragments(tmp_path: Path) -> None:
    big = AARQ + bytes(range(256)) * 6  # a wrapper PDU of about 1.6 kB
    big = big[:6] + (len(big) - 8).to_bytes(2, "big") + big[8:]
    pkt = IP(src="192.0.2.2", dst="192.0.2.1", id=77,
             options=b"\x94\x04\x00\x00") / UDP(sport=40000, dport=4059) / Raw(big)
    frags = [bytes(f) for f in fragment(pkt, fragsize=512)]
    assert len(frags) == 4 and frags[0][0] & 0x0F == 6  # IHL 6: the router-alert option
    frames = [frags[2], frags[0], frags[3], frags[1], frags[0][:-40]]
    path = write_pcap(tmp_path / "f.pcap", 101, [*frames, udp(GET_RSP)])
    items = list(iter_pdus(path))
    pdus = only(items, Pdu)
    assert [p.data for p in pdus] == [big, GET_RSP]
    assert pdus[0].frames == [4]  # the fragment that completed the datagram
    # a lone (first) fragment whose datagram never completes is reported
    path = write_pcap(tmp_path / "g.pcap", 101, [frags[0], udp(GET_RSP)])
    items = list(iter_pdus(path))
    assert [p.data for p in only(items, Pdu)] == [GET_RSP]
    assert [n.code for n in only(items, Finding)] == ["ip.fragments-incomplete"]


def test_ipv6_extension_headers_and_fragments(tmp_path: Path) -> None:
    base = IPv6(src="2001:db8::2", dst="2001:db8::1")
    ext = base / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=[], segleft=0)
    plain = bytes(ext / UDP(sport=40000, dport=4059) / Raw(AARE))
    big = AARQ + bytes(1500)
    big = big[:6] + (len(big) - 8).to_bytes(2, "big") + big[8:]
    frags = [bytes(f) for f in fragment6(
        base / IPv6ExtHdrFragment(id=9) / UDP(sport=40000, dport=4059) / Raw(big), 600)]
    assert len(frags) == 3
    path = write_pcap(tmp_path / "v6.pcap", 229, [plain, frags[1], frags[2], frags[0]])
    pdus = only(list(iter_pdus(path)), Pdu)
    assert [p.data for p in pdus] == [AARE, big]
    path = write_pcap(tmp_path / "v6b.pcap", 229, [frags[1], frags[2]])
    items = list(iter_pdus(path))
    assert not only(items, Pdu)
    notes = only(items, Finding)
    assert len(notes) == 1 and "first fragment missing" in notes[0].message


def test_udp_several_pdus_per_datagram_and_heuristics(tmp_path: Path) -> None:
    frames = [
        udp(AARQ + GET_RSP + AARE),  # wrapper x3 on 4059
        udp(SNRM + UA[1:] + GET, 50000, 4061),  # HDLC on another port: taken by heuristics
        udp(b"\x01\x02\x03 not dlms", 50000, 5353),  # skipped silently
        udp(GET_RSP[8:], 4059, 40000),  # bare APDU on 4059: raw
        udp(GET_RSP[8:], 50000, 5000),  # bare APDU elsewhere: not taken
        udp(b"\x00\x01" + b"\xff" * 10, 40000, 4059),  # bad framing on 4059: noted
    ]
    items = list(iter_pdus(write_pcap(tmp_path / "u.pcap", 101, frames)))
    pdus = only(items, Pdu)
    assert [(p.frames, p.transport) for p in pdus] == [
        ([1], "wrapper"), ([1], "wrapper"), ([1], "wrapper"),
        ([2], "hdlc"), ([2], "hdlc"), ([2], "hdlc"), ([4], "raw")]
    assert [p.data for p in pdus[:6]] == [AARQ, GET_RSP, AARE, SNRM, UA, GET]
    assert pdus[3].direction == "client->server" and pdus[6].direction == "server->client"
    assert [n.frame for n in only(items, Finding)] == [6]
    items = list(iter_pdus(write_pcap(tmp_path / "o.pcap", 101, frames), {5000: "raw"}))
    assert [p.frames for p in only(items, Pdu)][-1] == [5]


def test_serial_records_with_partial_and_several_frames(tmp_path: Path) -> None:
    i_req = hdlc(b"\x02\x23", b"\x03", 0x10, b"\xe6\xe6\x00" + GET_RSP[8:])
    stream = SNRM + UA + i_req + b"\x7e" + SNRM[1:]
    cuts = [0, 4, 30, 31, len(stream) - 3, len(stream)]
    records = [stream[a:b] for a, b in itertools.pairwise(cuts)]
    path = write_pcap(tmp_path / "s.pcap", 147, [b"\x55\x7e\xa0" + records[0], *records[1:]])
    items = list(iter_pdus(path))
    pdus = only(items, Pdu)
    assert [p.data for p in pdus] == [SNRM, UA, i_req, b"\x7e" + SNRM[1:]]
    assert [p.frames for p in pdus] == [[1, 2], [2, 3, 4], [4], [4, 5]]
    assert directions(pdus) == ["client->server", "server->client",
                                "client->server", "client->server"]
    assert [n.code for n in only(items, Finding)] == ["hdlc.skipped-bytes"]


def test_pcapng_direction_flags_and_comments(tmp_path: Path) -> None:
    path = write_pcapng(tmp_path / "d.pcapng", 147, [
        (SNRM, 2, "to the meter"), (UA, 1, None), (UA, None, "no flag")])
    records = only(list(read_capture(path)), Record)
    assert [(r.direction, r.comment) for r in records] == [
        ("client->server", "to the meter"), ("server->client", None), ("unknown", "no flag")]
    assert records[0].time == 1_700_000_000.0
    pdus = only(list(iter_pdus(path)), Pdu)
    assert directions(pdus) == ["client->server", "server->client",
                                "server->client"]
    assert pdus[0].comment == "to the meter"


def test_nanosecond_pcap_and_truncated_last_record(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "n.pcap", 147, [SNRM], nano=True)
    (record,) = only(list(read_capture(path)), Record)
    assert record.time == pytest.approx(1_700_000_000 + 250e-9)
    path = write_pcap(tmp_path / "t.pcap", 147, [SNRM, UA], caplen_extra=0)
    path.write_bytes(path.read_bytes()[:-5])
    items = list(read_capture(path))
    assert [n.code for n in only(items, Finding)] == ["capture.truncated"]


def test_unsupported_link_type_is_noted_once(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "w.pcap", 105, [b"\x00" * 30, b"\x00" * 30])
    items = list(read_capture(path))
    assert [(n.code, n.frame) for n in only(items, Finding)] == [
        ("capture.unsupported-linktype", 1)]


def test_capture_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.pcap").write_bytes(b"")
    (tmp_path / "text.pcap").write_text("this is not a capture\n")
    (tmp_path / "short.pcap").write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00")
    (tmp_path / "bad.pcapng").write_bytes(b"\x0a\x0d\x0d\x0a" + b"\x00" * 40)
    cases = {"missing.pcap": "No such file", "empty.pcap": "empty", "text.pcap": "not a pcap",
             "short.pcap": "not a readable", "bad.pcapng": "not a readable", ".": "directory"}
    for name, text in cases.items():
        with pytest.raises(CaptureError, match=text) as err:
            read_capture(tmp_path / name)
        assert "\n" not in str(err.value)


class CountingReader(io.BufferedReader):
    """A file that counts the bytes handed out."""

    def __init__(self, path: Path) -> None:
        super().__init__(io.FileIO(str(path)))
        self.consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.consumed += len(data)
        return data


def test_read_capture_is_lazy(tmp_path: Path) -> None:
    frames = [udp(AARQ)] * 20000
    path = write_pcap(tmp_path / "big.pcap", 101, frames)
    size = path.stat().st_size
    with CountingReader(path) as f:
        records = read_capture(f)
        first = next(records)
        assert isinstance(first, Record) and first.frame_no == 1
        assert f.consumed < size // 100
        assert sum(1 for _ in records) == len(frames) - 1
        assert f.consumed == size
