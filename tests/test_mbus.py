"""Wired M-Bus layer, DLMS segment reassembly and the M-Bus framer against the shared corpus."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.packet import Raw, raw

from dissector.analysis.pipeline import Dissector
from dissector.analysis.reassembly import MbusReassembler
from dissector.analysis.record import ApduRecord
from dissector.framing.mbus import MbusSplitter, looks_like_mbus
from dissector.stages import Pdu
from keys.keystore import keystore_from_flags
from layers.expert import Finding, findings_of
from layers.mbus import (
    MBus,
    MBusAck,
    MBusLongFrame,
    MBusSegment,
    MBusShortFrame,
    build_long_frames,
    checksum,
    describe_address,
    describe_ci,
    describe_control,
    frame_length,
    mbus_segment,
)

try:  # tests/ as a package, or as a plain directory on sys.path
    from dissector.conftest import corpus_path
except ImportError:
    from conftest import corpus_path  # type: ignore[no-redef]


def mbus_items(manifest: dict) -> list[dict]:
    items = [i for i in manifest["items"] if str(i.get("transport", "")).startswith("M-Bus")]
    assert len(items) >= 9, [i["id"] for i in items]
    return items


def split(data: bytes) -> list[bytes]:
    """The frames of a corpus item, cut with `frame_length` (each must be complete)."""
    out, pos = [], 0
    while pos < len(data):
        n = frame_length(data, pos, final=True)
        assert n, f"no frame at offset {pos}: {data[pos:pos + 8].hex()}"
        out.append(data[pos : pos + n])
        pos += n
    return out


class MbusFramer:
    """An M-Bus byte stream cut by `MbusSplitter` and dissected by the analysis, as events in
    input order: findings (skipped bytes, lost segments, incomplete APDUs at the end), records
    of link frames (ACK, short frames, other CIs, bad check sums: transport "link") and
    records of the joined APDUs."""

    def __init__(self, link: str = "input") -> None:
        self.link = link
        self.splitter = MbusSplitter()
        self.dis = Dissector()

    def feed(self, data: bytes, frame_no: int = 0, time: float = 0.0) -> list:
        return self._events(self.splitter.feed(data, frame_no, time))

    def flush(self) -> list:
        events = self._events(self.splitter.flush())
        return events + self.dis.finish()  # the notes before were given by _events

    def _events(self, items: list[Pdu | Finding]) -> list:
        events: list = []
        for item in items:
            if isinstance(item, Finding):
                events.append(item)
                continue
            item.link = self.link
            records = list(self.dis.feed(item))
            events.extend(f for _, f in self.dis.notes.take())  # in order, before the records
            events.extend(records)
        return events


def is_link_frame(event: object) -> bool:
    return isinstance(event, ApduRecord) and event.transport == "link"


def is_apdu(event: object) -> bool:
    return isinstance(event, ApduRecord) and event.transport != "link"


def data_of(rec: ApduRecord) -> bytes:
    """The bytes of the joined APDU a record dissects."""
    return raw(rec.packet)


def kind(event: object) -> str:
    return "Finding" if isinstance(event, Finding) else "LinkFrame" if is_link_frame(
        event) else "Apdu"


def units_from_mbus(data: bytes, line_no: int) -> list[ApduRecord]:
    """The APDUs of one self-contained input line of M-Bus frames."""
    framer = MbusFramer()
    return [e for e in framer.feed(data, line_no) + framer.flush() if is_apdu(e)]


def records_of(item: dict, data: bytes) -> list:
    keys = item.get("keys") or {}
    store = keystore_from_flags(ek=keys["GUEK"]) if keys.get("GUEK") else None
    return list(Dissector(store).feed(Pdu(data, "raw", [1])))


def framed_apdu(item: dict) -> ApduRecord:
    framer = MbusFramer()
    events = framer.feed(bytes.fromhex(item["hex"]), 1) + framer.flush()
    units = [e for e in events if is_apdu(e)]
    assert len(units) == 1 and len(events) == 1, (item["id"], events)
    return units[0]


# -- corpus ----------------------------------------------------------------------------------
def test_corpus_frames_decode_and_round_trip(manifest: dict) -> None:
    for item in mbus_items(manifest):
        frames = split(bytes.fromhex(item["hex"]))
        described = item.get("mbus_frames")
        if described:
            assert len(frames) == len(described), item["id"]
        segments = []
        for n, wire in enumerate(frames):
            frame = MBus(wire)
            assert isinstance(frame, MBusLongFrame), item["id"]
            assert raw(frame) == wire, item["id"]
            assert frame.checksum_ok is True and frame.stop == 0x16, item["id"]
            assert not [f for f in findings_of(frame) if f.severity == "error"], item["id"]
            if described:
                assert frame.ci == int(described[n]["ci"], 16), item["id"]
                if "L" in described[n]:
                    assert len(wire) - 6 == described[n]["L"], item["id"]
            seg = mbus_segment(frame)
            assert seg is not None and seg.address == 0xFF and seg.from_master, item["id"]
            segments.append(seg)
        assert [s.sequence for s in segments] == list(range(len(segments))), item["id"]
        assert [s.last for s in segments] == [False] * (len(segments) - 1) + [True]
        joined = b"".join(s.data for s in segments)
        if item.get("apdu_hex"):
            assert joined.hex() == item["apdu_hex"], item["id"]
        # general-glo-ciphering: tag, system title, then a BER length that covers the rest
        assert joined[0] == 0xDB and joined[1] == 8, item["id"]
        assert joined[2:10].hex() == item.get("system_title", joined[2:10].hex()), item["id"]
        length_byte = joined[10]
        body = joined[11:] if length_byte < 0x80 else joined[11 + (length_byte & 0x7F):]
        declared = length_byte if length_byte < 0x80 else int.from_bytes(
            joined[11 : 11 + (length_byte & 0x7F)], "big")
        assert len(body) == declared, item["id"]


def test_corpus_items_through_the_pipeline(manifest: dict) -> None:
    levels = {}
    for item in mbus_items(manifest):
        unit = framed_apdu(item)
        if item.get("apdu_hex"):
            assert data_of(unit).hex() == item["apdu_hex"], item["id"]
        (rec,) = records_of(item, data_of(unit))
        assert rec.apdu == "general-glo-ciphering", item["id"]
        sec = rec.security()
        if "system_title" in item:  # one item has only its frames and plaintext
            assert sec["system_title"] == item["system_title"].upper(), item["id"]
            assert sec["invocation_counter"] == int(item["invocation_counter"], 16), item["id"]
            assert sec["control"] == int(item["security_control"], 16), item["id"]
        codes = {f.code for f in rec.all_findings()}
        errors = [f for f in rec.all_findings() if f.severity == "error"]
        level = item["verification_level"]
        levels[level] = levels.get(level, 0) + 1
        if level in ("published-plaintext-match", "plausible-plaintext"):
            assert rec.plaintext().hex() == item["plaintext_hex"], item["id"]
            assert rec.inner().apdu_name == "data-notification", item["id"]
            assert not errors, (item["id"], errors)
        elif level == "partial":
            # the first segment deciphers to a data-notification, the second does not
            plain = rec.plaintext()
            assert plain.hex() == item["plaintext_hex"], item["id"]
            assert plain[:1] == b"\x0f"
            assert "security.not-well-formed" in codes, (item["id"], codes)
            assert "mbus.tsap-mismatch" in {f.code for f in unit.findings}, item["id"]
        else:
            assert level == "not verified" and not item.get("keys"), item["id"]
            assert rec.plaintext() is None and "security.no-key" in codes, item["id"]
    assert levels.get("plausible-plaintext", 0) >= 4 and levels.get("partial") == 1, levels


def test_expected_xml_of_the_kmswest_item(manifest: dict) -> None:
    item = next(i for i in mbus_items(manifest) if i.get("expected_file", "").endswith(
        "mbus_kmswest_decoded.xml"))
    root = ET.parse(corpus_path(item["expected_file"])).getroot()
    (rec,) = records_of(item, data_of(framed_apdu(item)))
    env = rec.envelope
    assert root.tag == "GeneralGloCiphering"
    assert rec.security()["system_title"] == root.get("SystemTitle")
    assert env.invocation_counter == int(root.get("FrameCounter"))
    assert root.get("Ciphertext").lower() in data_of(framed_apdu(item)).hex()


def test_expected_xml_of_the_netz_noe_item(manifest: dict) -> None:
    item = next(i for i in mbus_items(manifest) if i.get("expected_file", "").endswith(
        "mbus_netz_noe_p1_decoded.xml"))
    root = ET.parse(corpus_path(item["expected_file"])).getroot()
    (rec,) = records_of(item, data_of(framed_apdu(item)))
    assert rec.security()["system_title"] == root.get("SystemTitle")
    assert rec.security()["invocation_counter"] == int(root.get("FrameCounter"))
    note = root.find("DataNotification")
    inner = rec.inner()
    assert inner.apdu_name == "data-notification"
    assert f"{inner.long_invoke_id_and_priority:08X}" == note.get("LongInvokeId")


def test_l_field_overflow_is_reported_and_rebuilt(manifest: dict) -> None:
    item = next(i for i in mbus_items(manifest) if i["hex"].startswith("68010168"))
    first = split(bytes.fromhex(item["hex"]))[0]
    frame = MBus(first)
    assert frame.length == frame.length2 == 1
    assert len(frame.data_bytes) == 257 - 5
    assert [f.code for f in findings_of(frame)] == ["mbus.bad-length"]
    assert raw(frame) == first
    assert "mbus.bad-length" in {f.code for f in framed_apdu(item).findings}
    # fed one byte at a time, the framer still finds the frame
    framer = MbusFramer()
    events = [e for i, b in enumerate(bytes.fromhex(item["hex"]))
              for e in framer.feed(bytes([b]), i)] + framer.flush()
    assert [kind(e) for e in events] == ["Apdu"]
    assert data_of(events[0]).hex() == item["apdu_hex"]


def test_detection_of_corpus_frames(manifest: dict) -> None:
    for item in mbus_items(manifest):
        data = bytes.fromhex(item["hex"])
        assert looks_like_mbus(data) and looks_like_mbus(data[:4]), item["id"]
        assert units_from_mbus(data, 7)[0].frames == [7]
    assert not looks_like_mbus(bytes.fromhex("7ea0080221619363977e"))  # HDLC SNRM
    assert not looks_like_mbus(bytes.fromhex("0001001000010005c001c10003"))  # wrapper
    assert not looks_like_mbus(bytes.fromhex("db084b464d"))
    assert not looks_like_mbus(b"\x68\x05\x06\x68")
    assert not looks_like_mbus(b"")


# -- the layer on values of EN 13757-2 --------------------------------------------------------
@pytest.mark.parametrize(("control", "words"), [
    (0x40, "SND_NKE FCB=0 FCV=0"), (0x53, "SND_UD FCB=0 FCV=1"), (0x73, "SND_UD FCB=1 FCV=1"),
    (0x5A, "REQ_UD1 FCB=0 FCV=1"), (0x7B, "REQ_UD2 FCB=1 FCV=1"), (0x08, "RSP_UD ACD=0 DFC=0"),
    (0x28, "RSP_UD ACD=1 DFC=0"), (0x00, "ACK ACD=0 DFC=0"),
])
def test_control_field_names(control: int, words: str) -> None:
    assert describe_control(control) == words


def test_address_and_ci_names() -> None:
    assert describe_address(0) == "unconfigured"
    assert describe_address(5) == "primary 5"
    assert describe_address(253) == "secondary addressing"
    assert describe_address(255) == "broadcast (no reply)"
    assert describe_ci(0x00) == "DLMS segment 0"
    assert describe_ci(0x11) == "DLMS segment 1, last"
    assert describe_ci(0x1F) == "DLMS segment 15, last"
    assert describe_ci(0x72) == "variable data response (long header)"
    assert describe_ci(0xBD) == "set baud rate 9600"


def test_short_frames_and_ack() -> None:
    req_ud2 = bytes.fromhex("105b015c16")  # REQ_UD2 to primary address 1
    snd_nke = bytes.fromhex("1040014116")  # SND_NKE to primary address 1
    assert raw(MBusShortFrame(control=0x5B, address=1)) == req_ud2
    assert raw(MBusShortFrame(control=0x40, address=1)) == snd_nke
    for wire in (req_ud2, snd_nke):
        frame = MBus(wire)
        assert isinstance(frame, MBusShortFrame) and frame.checksum_ok
        assert raw(frame) == wire and not findings_of(frame)
        assert mbus_segment(frame) is None
    ack = MBus(b"\xe5")
    assert isinstance(ack, MBusAck) and raw(ack) == b"\xe5"
    bad = MBus(bytes.fromhex("105b015d16"))
    assert bad.checksum_ok is False
    assert [f.code for f in findings_of(bad)] == ["mbus.bad-checksum"]


def test_long_frame_is_built_with_lengths_and_checksum() -> None:
    apdu = bytes.fromhex("0f0000000100")
    wire = raw(MBusLongFrame(control=0x53, address=0xFF, ci=0x10, stsap=1, dtsap=0x67,
                             data=MBusSegment(apdu)))
    body = bytes([0x53, 0xFF, 0x10, 0x01, 0x67]) + apdu
    assert wire == bytes([0x68, len(body), len(body), 0x68]) + body + bytes(
        [sum(body) & 0xFF, 0x16])
    frame = MBus(wire)
    assert frame.checksum_ok and frame.apdu is not None
    assert frame.apdu.apdu_name == "data-notification"
    assert raw(frame) == wire


def test_frame_with_other_ci_keeps_its_user_data() -> None:
    body = bytes([0x08, 0x01, 0x72]) + bytes(range(12))
    wire = bytes([0x68, len(body), len(body), 0x68]) + body + bytes([checksum(body), 0x16])
    frame = MBus(wire)
    assert isinstance(frame.data, Raw) and frame.data_bytes == bytes(range(12))
    assert frame.sequence is None and mbus_segment(frame) is None
    assert raw(frame) == wire and not findings_of(frame)
    events = MbusFramer().feed(wire)
    assert len(events) == 1 and is_link_frame(events[0])


def test_bad_checksum_and_length_mismatch() -> None:
    (wire,) = build_long_frames(b"\x0f\x00\x00\x00\x01\x00")
    broken = wire[:8] + bytes([wire[8] ^ 1]) + wire[9:]
    frame = MBus(broken)
    assert frame.checksum_ok is False
    assert "mbus.bad-checksum" in {f.code for f in findings_of(frame)}
    assert raw(frame) == broken
    events = MbusFramer().feed(broken)
    assert len(events) == 1 and is_link_frame(events[0])
    assert "mbus.bad-checksum" in {f.code for f in events[0].all_findings()}
    mismatch = wire[:2] + bytes([wire[2] + 1]) + wire[3:]
    assert "mbus.length-mismatch" in {f.code for f in findings_of(MBus(mismatch))}


# -- reassembly and framing -----------------------------------------------------------------
def _frames(apdu: bytes, max_data: int) -> list[bytes]:
    return build_long_frames(apdu, stsap=1, dtsap=0x67, max_data=max_data)


def test_lost_first_segment_and_incomplete_apdu() -> None:
    frames = _frames(bytes(range(200)) * 2, 100)
    assert len(frames) == 4
    framer = MbusFramer()
    events = framer.feed(b"".join(frames[1:]), 1) + framer.flush()
    codes = [e.code for e in events if isinstance(e, Finding)]
    assert codes == ["mbus.segment-lost"] * 3
    assert not [e for e in events if is_apdu(e)]
    framer = MbusFramer()
    events = framer.feed(b"".join(frames[:2]), 1) + framer.flush()
    assert [e.code for e in events] == ["mbus.incomplete"]


def test_gap_drops_the_apdu_and_the_next_one_decodes() -> None:
    frames = _frames(bytes(300), 100)
    again = _frames(b"\x0f" + bytes(150), 100)
    framer = MbusFramer()
    events = framer.feed(frames[0] + frames[2] + b"".join(again), 1) + framer.flush()
    notes = [e for e in events if isinstance(e, Finding)]
    units = [e for e in events if is_apdu(e)]
    assert [n.code for n in notes] == ["mbus.segment-lost", "mbus.segment-lost"]
    assert [data_of(u) for u in units] == [b"\x0f" + bytes(150)]


def test_sequence_numbers_wrap_after_sixteen_segments() -> None:
    apdu = bytes(i & 0xFF for i in range(20 * 10))
    frames = _frames(apdu, 10)
    assert len(frames) == 20 and MBus(frames[16]).ci == 0x00
    (unit,) = [e for e in MbusFramer().feed(b"".join(frames)) if is_apdu(e)]
    assert data_of(unit) == apdu


def test_segments_of_two_addresses_interleave() -> None:
    a = build_long_frames(b"\x0f" + bytes(300), address=1, max_data=200)
    b = build_long_frames(b"\x0f" + b"\x01" * 300, address=2, max_data=200)
    framer = MbusFramer("serial0")
    events = framer.feed(a[0] + b[0] + b[1] + a[1])
    assert [(e.link, data_of(e)[1]) for e in events if is_apdu(e)] == [
        ("serial0 mbus 2", 1), ("serial0 mbus 1", 0)]
    reasm = MbusReassembler()
    assert reasm.finish() == []


def test_noise_ack_and_short_frames_in_a_stream() -> None:
    frames = _frames(b"\x0f" + bytes(40), 30)
    stream = b"\x00\x13noise" + bytes.fromhex("105b015c16") + frames[0] + b"\xe5" + frames[1]
    for step in (len(stream), 1, 3):
        framer = MbusFramer()
        events = [e for i in range(0, len(stream), step)
                  for e in framer.feed(stream[i : i + step], i)] + framer.flush()
        kinds = [kind(e) for e in events]
        assert kinds == ["Finding", "LinkFrame", "LinkFrame", "Apdu"], (step, kinds)
        assert events[0].code == "mbus.skipped-bytes"
        assert "skipped 7 byte(s)" in events[0].message
        assert isinstance(events[1].packet, MBusShortFrame)
        assert isinstance(events[2].packet, MBusAck)
        assert data_of(events[3]) == b"\x0f" + bytes(40)


def test_truncated_corpus_frames_give_findings(manifest: dict) -> None:
    wire = split(bytes.fromhex(mbus_items(manifest)[0]["hex"]))[1]
    for cut in range(1, len(wire)):
        frame = MBus(wire[:cut])
        assert findings_of(frame), cut
        assert raw(frame) == wire[:cut], cut
        assert mbus_segment(frame) is None, cut
        assert not looks_like_mbus(wire[:cut]) or cut >= 4
    framer = MbusFramer()
    events = framer.feed(wire[:-1]) + framer.flush()
    assert [e.code for e in events] == ["mbus.skipped-bytes"]


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=600), st.sampled_from([0x53, 0x73, 0x08]),
       st.integers(0, 255), st.integers(0, 255), st.integers(0, 255),
       st.integers(1, 250))
def test_hypothesis_build_split_join(apdu: bytes, control: int, address: int, stsap: int,
                                     dtsap: int, max_data: int) -> None:
    frames = build_long_frames(apdu, control=control, address=address, stsap=stsap,
                               dtsap=dtsap, max_data=max_data)
    for wire in frames:
        frame = MBus(wire)
        assert raw(frame) == wire and frame.checksum_ok
        assert not [f for f in findings_of(frame) if f.code.startswith("mbus.")]
    events = MbusFramer().feed(b"".join(frames))
    assert [kind(e) for e in events] == ["Apdu"]
    assert [data_of(e) for e in events] == [apdu]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300),
       st.sampled_from([b"", b"\x68", b"\x10", b"\xe5", b"\x68\x05\x05\x68"]))
def test_hypothesis_random_bytes_never_raise(data: bytes, prefix: bytes) -> None:
    wire = prefix + data
    if wire:
        frame = MBus(wire)
        assert raw(frame) == wire
        findings_of(frame)
        mbus_segment(frame)
    looks_like_mbus(wire)
    framer = MbusFramer()
    events = framer.feed(wire) + framer.flush()
    assert all(isinstance(e, ApduRecord | Finding) for e in events)


def test_read_finds_mbus_in_a_serial_capture(tmp_path: Path) -> None:
    """M-Bus long frames in a capture (link type 147, one record per serial read, cut at odd
    places) are found by `read`, joined and deciphered like `decode` does (issue: link layers)."""
    import io as _io
    import json as _json

    from scapy.utils import RawPcapWriter

    from dissector.cli.main import main

    items = _json.loads(corpus_path("manifest.json").read_text())["items"]
    item = next(i for i in items if i["id"] == "item008")
    data = bytes.fromhex(item["hex"])
    path = tmp_path / "mbus.pcap"
    writer = RawPcapWriter(str(path), linktype=147)
    writer.write_header(None)
    for n, start in enumerate(range(0, len(data), 37)):
        writer.write_packet(data[start:start + 37], sec=1_700_000_000 + n, usec=0)
    writer.close()
    out = _io.StringIO()
    assert main(["read", str(path), "--json", "--ek", "101112131415161718191A1B1C1D1E1F"],
                out) == 0
    rows = [_json.loads(x) for x in out.getvalue().splitlines() if '"apdu"' in x]
    assert [r["inner"] for r in rows] == ["data-notification"]
    assert rows[0]["plaintext"] == item["plaintext_hex"].upper()
