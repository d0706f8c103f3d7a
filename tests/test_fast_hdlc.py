"""The fast reading of HDLC frames without an APDU (`layers.fasthdlc`) against the HDLC layer,
frame by frame: on every such frame of the shared corpus and of a generated head-end capture,
and on generated frames (any addresses and control byte, no information field, SNRM/UA
negotiation parameters or other bytes, with correct and with broken check sequences). For
every input `decode_frame` gives None or exactly what the Packet path gives (name, `fields` as
JSON text byte for byte, summary), on a frame the layer dissects without a finding; and it
must read the clean SNRM, UA, DISC, DM and RR frames, not leave them all to the Packet path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from corpus_records import corpus_records
from hypothesis import given, settings
from hypothesis import strategies as st

from dissector.analysis.capture import dissect_capture
from dissector.analysis.pipeline import Dissector
from dissector.output.fields import packet_fields
from keys.keystore import load_keystore
from layers.crc import crc16
from layers.expert import findings_of
from layers.fasthdlc import decode_frame
from layers.hdlc import HDLC


def check(data: bytes) -> bool:
    """Decode `data` both ways; fail unless the fast reading is None or the same. Whether it
    was read."""
    fast = decode_frame(data)
    if fast is None:
        return False
    pkt = HDLC(data)
    assert findings_of(pkt) == [], (data.hex(), findings_of(pkt))
    assert fast.text == json.dumps(packet_fields(pkt)), data.hex()
    assert fast.summary == pkt.mysummary(), data.hex()
    assert fast.name == f"hdlc-{pkt.kind.lower()}", data.hex()
    return True


def _frames(records: object) -> list[bytes]:
    return [bytes(r.packet.original) for r in records  # type: ignore[attr-defined]
            if r.apdu.startswith("hdlc-")]


def test_corpus_frames() -> None:
    """Each is read the same, and every one the layer dissects without a finding is read."""
    frames = _frames(corpus_records())
    assert len(frames) > 100, "the corpus has HDLC frames without an APDU"
    for data in frames:
        assert check(data) or findings_of(HDLC(data)), data.hex()


def test_bench_frames(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "bench" / "generate.py"), "--sizes", "2000",
                    "--out", str(tmp_path)], check=True, capture_output=True)
    recs = dissect_capture(str(tmp_path / "headend-2k.pcap"),
                           Dissector(load_keystore(tmp_path / "headend-2k.keys.toml")),
                           {4061: "hdlc"})
    frames = _frames(recs)
    assert len(frames) > 20
    assert all(check(f) for f in frames)  # SNRM/UA with parameters, DISC, UA


def frame(dst: bytes, src: bytes, control: int, info: bytes | None, segmented: bool = False,
          bad: int = 0) -> bytes:
    """A frame with its length, HCS and FCS computed (`bad`: 1 breaks the HCS, 2 the FCS)."""
    length = 2 + len(dst) + len(src) + 1 + (2 + len(info) if info is not None else 0) + 2
    head = bytes([0xA0 | (0x08 if segmented else 0) | length >> 8, length & 0xFF]) + dst + src \
        + bytes([control])
    body = head
    if info is not None:
        body += (crc16(head) ^ (bad & 1)).to_bytes(2, "little") + info
    body += (crc16(body) ^ (bad >> 1 & 1)).to_bytes(2, "little")
    return b"\x7e" + body + b"\x7e"


ADDRESS = st.sampled_from([b"\x03", b"\x21", b"\x41", b"\x02\x23", b"\x00\x02\x02\xad",
                           b"\x00\x02", b"\x02", b"\x00\x03\x00\x02\x01"])
CONTROLS = st.sampled_from([0x93, 0x83, 0x73, 0x63, 0x53, 0x1F, 0x0F, 0x97, 0x11, 0x31, 0xF1,
                            0x10, 0x32, 0x03, 0x13, 0x87])


@st.composite
def parameters(draw: st.DrawFn) -> bytes:
    """A negotiation information field: 81 80, a group length (maybe wrong), parameters."""
    body = b""
    for _ in range(draw(st.integers(0, 5))):
        value = draw(st.binary(min_size=0, max_size=5))
        body += bytes([draw(st.sampled_from([5, 6, 7, 8, 9, 0xFF])), len(value)]) + value
    size = len(body) + draw(st.sampled_from([0, 0, 0, 1, -1]))
    return b"\x81\x80" + bytes([max(0, size)]) + body + draw(st.sampled_from([b"", b"", b"\x00"]))


@settings(max_examples=1500, deadline=None)
@given(ADDRESS, ADDRESS, CONTROLS,
       st.one_of(st.none(), parameters(), st.binary(max_size=12)), st.booleans(),
       st.sampled_from([0, 0, 0, 1, 2]))
def test_generated_frames(dst: bytes, src: bytes, control: int, info: bytes | None,
                          segmented: bool, bad: int) -> None:
    check(frame(dst, src, control, info, segmented, bad))


@pytest.mark.parametrize("control", [0x93, 0x73, 0x53, 0x1F, 0x11, 0x31])
def test_clean_frames_are_read(control: int) -> None:
    """SNRM, UA, DISC, DM and RR: with no information field, and SNRM/UA with parameters."""
    assert check(frame(b"\x00\x02\x02\xad", b"\x03", control, None))
    if control in (0x93, 0x73):
        params = bytes.fromhex("05020400060204000704000000010804000000 01".replace(" ", ""))
        assert check(frame(b"\x00\x02\x02\xad", b"\x03", control,
                           b"\x81\x80" + bytes([len(params)]) + params))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40))
def test_any_bytes(data: bytes) -> None:
    """Any input at all: None or the same, never an exception."""
    check(data)
