"""IEC 61334-4-32 LLC layer against bearxiong99_sample.pcap (UDP 4059, per the manifest)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw, raw
from scapy.utils import rdpcap

from dissector.analysis.pipeline import Dissector
from dissector.framing.lines import hex_units
from dissector.framing.mbus import looks_like_mbus
from dissector.stages import Pdu
from layers.expert import findings_of
from layers.llc432 import HEADER_LEN, LLC432, looks_like_llc432

try:  # tests/ as a package, or as a plain directory on sys.path
    from dissector.conftest import corpus_path
except ImportError:
    from conftest import corpus_path  # type: ignore[no-redef]

#: What the 4-32 datagrams of the sample carry, in capture order (read from the bytes).
SAMPLE_APDUS = ["aarq", "exception-response", "aarq", "aare", "event-notification-request",
                "set-request", "set-response", "action-request", "action-response", "rlrq"]


def udp_payloads() -> list[tuple[int, bytes, bytes]]:
    """(frame number, UDP payload as the UDP length gives it, Ethernet padding after it)."""
    out = []
    for n, pkt in enumerate(rdpcap(str(corpus_path("bearxiong99_sample.pcap"))), 1):
        udp = pkt[UDP]
        # the UDP 4059 binding reads every datagram as a wrapper PDU: take the bytes as sent
        load = bytes(udp.original[8 : udp.len])
        ip = pkt[IP]
        pad = bytes(ip.original[ip.len :])
        out.append((n, load, pad))
    return out


def test_sample_holds_hdlc_frames_and_llc432_datagrams(manifest: dict) -> None:
    item = next(i for i in manifest["items"] if i.get("pcap_file") == "bearxiong99_sample.pcap")
    assert "61334-4-32" in item["transport"]
    payloads = udp_payloads()
    kinds = {"7e": 0, "90": 0}
    for _, load, pad in payloads:
        kinds[load[:1].hex()] += 1
        # short frames are padded to the Ethernet minimum: zeros that are not DLMS bytes
        assert set(pad) <= {0}
    assert kinds == {"7e": 41, "90": 10}
    assert any(pad for _, load, pad in payloads if load[0] == 0x90)
    for sample in item["sample_payloads"]:
        if sample.startswith("90"):
            assert bytes.fromhex(sample) in [load for _, load, _ in payloads]


def test_sample_llc432_datagrams_decode_without_errors() -> None:
    seen = []
    for _, load, _ in udp_payloads():
        if load[0] != 0x90:
            assert not looks_like_llc432(load)
            continue
        assert looks_like_llc432(load) and not looks_like_mbus(load)
        pkt = LLC432(load)
        assert raw(pkt) == load
        assert (pkt.destination_lsap, pkt.source_lsap, pkt.control) == (0x90, 0x01, 0x01)
        assert not [f for f in findings_of(pkt) if f.severity == "error"], findings_of(pkt)
        seen.append(pkt.apdu.apdu_name)
    assert seen == SAMPLE_APDUS


def test_sample_llc432_datagrams_through_the_pipeline() -> None:
    dis = Dissector()
    names = []
    loads = [load for _, load, _ in udp_payloads() if looks_like_llc432(load)]
    units = list(hex_units(loads))  # one pasted line per datagram, numbered from 1
    assert len(units) == len(loads)
    for n, (load, unit) in enumerate(zip(loads, units, strict=True), 1):
        assert isinstance(unit, Pdu) and unit.data == load[HEADER_LEN:]
        assert unit.transport == "raw" and unit.frames == [n] and not unit.findings
        unit.link = "udp 10.1.1.1:0-10.2.2.2:4059"
        (rec,) = dis.feed(unit)
        errors = [f.code for f in rec.all_findings() if f.severity == "error"]
        assert errors == []  # nothing malformed
        # the meter's exception-response to the first AARQ: a peer's error answer, a warning
        warnings = [f.code for f in rec.all_findings() if f.severity == "warning"]
        assert ("assoc.error-response" in warnings) is (rec.apdu == "exception-response")
        names.append(rec.apdu)
    assert names == SAMPLE_APDUS


def test_build_and_unexpected_lsap() -> None:
    rlrq = bytes.fromhex("6200")
    assert raw(LLC432() / Raw(rlrq)) == bytes.fromhex("900101") + rlrq
    pkt = LLC432(bytes.fromhex("910101") + rlrq)
    assert [f.code for f in findings_of(pkt)] == ["llc432.unexpected-lsap"]
    assert not looks_like_llc432(bytes.fromhex("910101") + rlrq)
    empty = LLC432(bytes.fromhex("900101"))
    assert [f.code for f in findings_of(empty)] == ["llc432.no-apdu"]
    # a line with such a header is not taken as 4-32 (`looks_like_llc432`); the header's
    # findings are what a PDU cut after it carries (as `hex_units` builds it)
    wire = bytes.fromhex("910101") + rlrq
    header = LLC432(wire, stop_dissection_after=LLC432)
    unit = Pdu(wire[HEADER_LEN:], "raw", [0], findings=findings_of(header))
    assert unit.data == rlrq and [f.code for f in unit.findings] == ["llc432.unexpected-lsap"]


def test_truncated_headers_give_findings() -> None:
    for cut in (1, 2):
        pkt = LLC432(bytes.fromhex("900101")[:cut])
        assert [f.code for f in findings_of(pkt)] == ["malformed.field"]
        assert raw(pkt) == bytes.fromhex("900101")[:cut]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(0, 255), st.integers(0, 255))
def test_hypothesis_any_payload_round_trips(body: bytes, ssap: int, control: int) -> None:
    wire = bytes([0x90, ssap, control]) + body
    pkt = LLC432(wire)
    assert raw(pkt) == wire
    findings_of(pkt)
