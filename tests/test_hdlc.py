"""HDLC and wrapper layers against published frames (notes §1, §2) and built frames."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.packet import Raw

from layers.crc import crc16
from layers.hdlc import (
    HDLC,
    LLC,
    HDLCParameters,
    control_kind,
    decode_address,
    describe_control,
    encode_address,
)
from layers.wrapper import Wrapper

# Frames published in the notes' sources (CRC verified there).
SNRM = "7EA00802232193BD647E"
ZIV_SNRM = "7EA00A000200210993 5329 7E"
ZIV_UA = "7EA017090002002173 42EB 818008 050200FF 060200FF 8771 7E"
ERROR = "7EA0106103527CE2E6E7000E060006DD487E"


def frame(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == 0x906E


def test_snrm_two_byte_server_address() -> None:
    f = HDLC(frame(SNRM))
    assert f.kind == "SNRM" and f.fcs_ok is True and f.hcs_ok is None
    assert decode_address(f.destination) == (1, 17) and decode_address(f.source) == (16, None)
    assert raw(f) == frame(SNRM)


def test_four_byte_addresses_and_ua_parameters() -> None:
    snrm, ua = HDLC(frame(ZIV_SNRM)), HDLC(frame(ZIV_UA))
    assert decode_address(snrm.destination) == (1, 16) and snrm.fcs_ok
    assert ua.kind == "UA" and ua.hcs_ok and ua.fcs_ok
    params = ua.information
    assert isinstance(params, HDLCParameters)
    assert [(p.parameter_id, int.from_bytes(p.value, "big")) for p in params.parameters] == \
        [(5, 255), (6, 255)]
    assert raw(ua) == frame(ZIV_UA)


def test_error_frame_llc_and_apdu() -> None:
    f = HDLC(frame(ERROR))
    assert isinstance(f.information, LLC) and f.information.ssap == 0xE7
    assert f.apdu.apdu_name == "confirmed-service-error"
    assert describe_control(f.control) == "I N(S)=1 N(R)=2 P/F=1"


def test_build_computes_length_and_check_sequences() -> None:
    built = HDLC(destination=(1, 17), source=16, control=0x93)
    assert raw(built) == frame(SNRM)
    err = HDLC(destination=48, source=1, control=0x52,
               information=LLC(ssap=0xE7) / Raw(bytes.fromhex("0E060006")))
    assert raw(err) == frame(ERROR)


def test_bad_fcs_and_truncation_are_findings() -> None:
    bad = bytearray(frame(ERROR))
    bad[-3] ^= 0xFF
    f = HDLC(bytes(bad))
    assert f.fcs_ok is False
    assert "hdlc.bad-fcs" in [x.code for x in f.findings]
    cut = HDLC(frame(ERROR)[:9])
    assert cut.findings


def test_control_kinds() -> None:
    expected = {0x10: "I", 0x32: "I", 0x31: "RR", 0x15: "RNR", 0x93: "SNRM", 0x53: "DISC",
                0x73: "UA", 0x1F: "DM", 0x97: "FRMR", 0x13: "UI", 0x03: "UI"}
    for byte, kind in expected.items():
        assert control_kind(byte) == kind, hex(byte)


addresses = st.one_of(
    st.builds(lambda u: encode_address(u), st.integers(0, 0x7F)),
    st.builds(lambda u, low: encode_address(u, low, 2), st.integers(0, 0x7F),
              st.integers(0, 0x7F)),
    st.builds(lambda u, low: encode_address(u, low, 4), st.integers(0, 0x3FFF),
              st.integers(0, 0x3FFF)))


@settings(max_examples=150, deadline=None)
@given(dst=addresses, src=addresses, control=st.integers(0, 255).map(lambda c: c & 0xFE),
       seg=st.integers(0, 1), info=st.binary(min_size=1, max_size=300))
def test_hypothesis_frames_round_trip(dst: bytes, src: bytes, control: int, seg: int,
                                      info: bytes) -> None:
    built = raw(HDLC(destination=dst, source=src, control=control, segmentation=seg,
                     information=Raw(info)))
    back = HDLC(built)
    assert raw(back) == built
    assert back.hcs_ok is True and back.fcs_ok is True
    assert back.destination == dst and back.source == src and back.segmentation == seg


def test_wrapper_round_trip_and_length() -> None:
    w = Wrapper(source_wport=1, destination_wport=16) / Raw(bytes.fromhex("0E060006"))
    b = raw(w)
    assert b == bytes.fromhex("0001000100100004") + bytes.fromhex("0E060006")
    back = Wrapper(b)
    assert back.length == 4 and back.apdu.apdu_name == "confirmed-service-error"
    assert raw(back) == b
    short = Wrapper(b[:-1])
    assert "wrapper.truncated" in [x.code for x in short.findings]
