"""HDLC and wrapper splitting, transport detection, port specs, HDLC direction inference."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dissector.analysis.directions import DirectionLearner
from dissector.framing.hdlc import HdlcSplitter, split_hdlc_frames
from dissector.framing.splitter import WrapperSplitter, parse_port_spec
from dissector.sources.detect import detect_transport, find_start, strip_llc_432
from dissector.stages import Pdu
from layers.crc import crc16
from layers.expert import Finding

# Real frames (CRC-valid) from public traces: a SNRM and UA with a 4-byte server address
# (gurux.fi forum 28871, quoted in dlms-protocol-notes §1.3), and frames of
# Dennisonius/wireshark_dlms sample_serial.pcap.
SNRM_4BYTE = bytes.fromhex("7EA00A00020021099353297E")
UA_4BYTE = bytes.fromhex("7EA01709000200217342EB818008050200FF060200FF87717E")
SNRM = bytes.fromhex("7ea0080221619363977e")
UA = bytes.fromhex("7ea01f61022173e1e2818012050180060180070400000001080400000001533b7e")
GET = bytes.fromhex("7ea01a022161541887e6e600c001c100030100200700ff020085837e")
DISC = bytes.fromhex("7ea008022161536f517e")
REAL = [SNRM_4BYTE, UA_4BYTE, SNRM, UA, GET, DISC]


def hdlc(dest: bytes, src: bytes, control: int, info: bytes = b"", segmented: bool = False
         ) -> bytes:
    """Build a frame with the CRC-16/X.25 check sequences (LSB first)."""
    header_len = 2 + len(dest) + len(src) + 1
    length = header_len + (len(info) + 2 if info else 0) + 2
    fmt = (0xA8 if segmented else 0xA0) | length >> 8
    header = bytes([fmt, length & 0xFF]) + dest + src + bytes([control])
    body = header
    if info:
        body += crc16(header).to_bytes(2, "little") + info
    return b"\x7e" + body + crc16(body).to_bytes(2, "little") + b"\x7e"


def pieces(items: list) -> list[bytes]:
    return [i.data for i in items if isinstance(i, Pdu)]


def notes(items: list) -> list[Finding]:
    return [i for i in items if isinstance(i, Finding)]


def skipped(note: Finding) -> int:
    """The byte count of a skipped-bytes finding ("skipped N byte(s) ...")."""
    found = re.search(r"skipped (\d+) byte\(s\)", note.message)
    assert found, note.message
    return int(found.group(1))


def hdlc_direction(frame: bytes, learned: DirectionLearner | None = None) -> str:
    """The direction of `frame` on one link, remembering pairs in `learned` when given."""
    return (learned or DirectionLearner()).direction("input", frame)


def run(splitter: HdlcSplitter | WrapperSplitter, chunks: list[bytes]) -> list:
    out: list = []
    for n, chunk in enumerate(chunks, 1):
        out += splitter.feed(chunk, n, float(n))
    return out + splitter.flush()


def test_crc_of_real_frames_is_valid() -> None:
    for frame in REAL:
        assert crc16(frame[1:-3]) == int.from_bytes(frame[-3:-1], "little")
    assert hdlc(b"\x02\x21", b"\x61", 0x93) == SNRM


def test_separate_and_shared_flags() -> None:
    separate = b"".join(REAL)
    shared = REAL[0] + b"".join(f[1:] for f in REAL[1:])
    for stream in (separate, shared):
        out = run(HdlcSplitter(), [stream])
        assert pieces(out) == REAL
        assert not notes(out)


def test_flag_fill_between_frames_is_not_noise() -> None:
    out = run(HdlcSplitter(), [SNRM + b"\x7e\x7e\x7e" + UA])
    assert pieces(out) == [SNRM, UA]
    assert not notes(out)


def test_byte_by_byte_feed_gives_the_same_frames_and_frame_numbers() -> None:
    stream = b"".join(REAL)
    splitter = HdlcSplitter()
    out = run(splitter, [bytes([b]) for b in stream])
    got = [i for i in out if isinstance(i, Pdu)]
    assert [p.data for p in got] == REAL
    start = 1
    for p in got:
        assert p.frames == list(range(start, start + len(p.data)))
        start += len(p.data)
    assert splitter.buffered == 0


def test_frame_numbers_of_a_frame_spread_over_records() -> None:
    out = run(HdlcSplitter(), [UA[:5], UA[5:20], UA[20:] + GET[:3], GET[3:]])
    got = [i for i in out if isinstance(i, Pdu)]
    assert [p.frames for p in got] == [[1, 2, 3], [3, 4]]
    assert got[0].time == 3.0


def test_noise_before_and_between_frames_is_reported() -> None:
    out = run(HdlcSplitter(), [b"\x00\x11\x22" + SNRM + b"\xaa\xbb" + UA])
    assert pieces(out) == [SNRM, UA]
    skipped_notes = notes(out)
    assert [skipped(n) for n in skipped_notes] == [3, 2]
    assert skipped_notes[0].severity == "note" and skipped_notes[1].severity == "warning"
    assert all(n.code == "hdlc.skipped-bytes" for n in skipped_notes)


def test_cut_frame_at_start_is_skipped() -> None:
    tail = UA[12:]  # the capture started inside a frame: ends with a 7E that opens nothing
    out = run(HdlcSplitter(), [tail + GET + DISC])
    assert pieces(out) == [GET, DISC]
    assert sum(skipped(n) for n in notes(out)) == len(tail)


def test_cut_frame_at_start_containing_a_flag_like_header() -> None:
    # the partial frame holds 7E A0 .. bytes that look like a frame start but fail the checks
    fake = b"\x7e\xa0\x19\x03\x21\x10\x00\x00" + b"\x55" * 30
    out = run(HdlcSplitter(), [fake[3:] + fake + GET])
    assert pieces(out) == [GET]


def test_7e_inside_frames() -> None:
    info = b"\xe6\xe6\x00" + bytes(range(0x70, 0x90)) + b"\x7e\x7e\xa0\x7e" * 20
    frame = hdlc(b"\x02\x23", b"\x03", 0x10, info)
    assert frame.count(b"\x7e") > 40
    # a format/length of A8 7E: a 126-byte segment whose length byte is the flag value
    seg_info = bytes(126 - 10)  # format 2 + addresses 3 + control 1 + HCS 2 + FCS 2
    segment = hdlc(b"\x02\x23", b"\x03", 0x32, seg_info, segmented=True)
    assert segment[1:3] == b"\xa8\x7e"
    out = run(HdlcSplitter(), [frame + segment[1:] + frame[1:]])
    assert pieces(out) == [frame, segment, frame]
    assert not notes(out)
    assert split_hdlc_frames(b"\x00" + frame + segment) == [frame, segment]


def test_bad_fcs_in_sync_is_kept_and_after_noise_is_dropped() -> None:
    bad = GET[:-3] + b"\x00\x00\x7e"
    out = run(HdlcSplitter(), [SNRM + bad[1:] + UA[1:]])
    assert pieces(out) == [SNRM, bad, UA]
    # after noise a frame must pass HCS or FCS: same frame with both check sequences broken
    worse = bytearray(bad)
    worse[7] ^= 0xFF  # HCS (after 7E A0 1A 02 21 61 54)
    out = run(HdlcSplitter(), [b"\x01\x02" + bytes(worse) + UA])
    assert pieces(out) == [UA]
    assert "bad HCS/FCS" in notes(out)[0].message


def test_bad_hcs_good_fcs_is_kept_after_noise() -> None:
    frame = bytearray(GET)
    frame[8] ^= 0x01  # HCS byte; FCS covers it, so patch the FCS too
    fcs = crc16(bytes(frame[1:-3]))
    frame[-3:-1] = fcs.to_bytes(2, "little")
    out = run(HdlcSplitter(), [b"\x42" + bytes(frame)])
    assert pieces(out) == [bytes(frame)]


def test_wrong_length_field_in_sync_ends_at_the_flag_with_valid_fcs() -> None:
    info = b"\xe6\xe6\x00\xc0\x01\xc1\x00\x2a\x00\x01\x01\x00\x00\xff\x02\x00"
    frame = bytearray(hdlc(b"\x03", b"\x21", 0x54, info))
    frame[2] -= 5  # length field too small; HCS then differs, FCS covers the real frame
    header = bytes(frame[1:6])
    frame[6:8] = crc16(header).to_bytes(2, "little")
    frame[-3:-1] = crc16(bytes(frame[1:-3])).to_bytes(2, "little")
    out = run(HdlcSplitter(), [SNRM + bytes(frame) + UA])
    assert pieces(out) == [SNRM, bytes(frame), UA]
    assert [n.code for n in notes(out)] == ["hdlc.bad-length"]


def test_partial_frame_at_end_is_reported() -> None:
    splitter = HdlcSplitter()
    out = splitter.feed(SNRM + UA[:10], 1, 1.0)
    assert pieces(out) == [SNRM]
    assert splitter.buffered == 10  # UA's opening flag and 9 more bytes wait
    rest = splitter.flush()
    assert not pieces(rest)
    assert skipped(notes(rest)[0]) == 10
    assert splitter.buffered == 0


def test_interrupt_resynchronises() -> None:
    splitter = HdlcSplitter()
    out = splitter.feed(SNRM + UA[:10], 1, 1.0)
    out += splitter.interrupt()  # a TCP gap: the rest of UA never comes
    out += splitter.feed(UA[25:] + GET, 2, 2.0)
    assert pieces(out) == [SNRM, GET]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(REAL), min_size=1, max_size=8),
       st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30),
       st.booleans())
def test_any_chunking_gives_the_same_frames(frames: list[bytes], cuts: list[int],
                                            share: bool) -> None:
    stream = frames[0] + b"".join(f[1:] if share else f for f in frames[1:])
    chunks, pos, i = [], 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        chunks.append(stream[pos : pos + step])
        pos += step
        i += 1
    out = run(HdlcSplitter(), chunks)
    assert pieces(out) == frames
    assert not notes(out)


def wrapper(apdu: bytes, src: int = 16, dst: int = 1) -> bytes:
    return b"\x00\x01" + src.to_bytes(2, "big") + dst.to_bytes(2, "big") + len(
        apdu).to_bytes(2, "big") + apdu


AARQ = bytes.fromhex("601da109060760857405080101be10040e01000000065f1f0400001e5dffff")
GET_REQ = bytes.fromhex("c001c100080000010000ff0200")


def test_wrapper_back_to_back_and_split() -> None:
    w1, w2, w3 = wrapper(AARQ), wrapper(GET_REQ, 1, 16), wrapper(b"")
    stream = w1 + w2 + w3 + w1
    out = run(WrapperSplitter(), [stream[:5], stream[5:40], stream[40:41], stream[41:]])
    assert pieces(out) == [w1, w2, w3, w1]
    assert not notes(out)
    got = [i for i in out if isinstance(i, Pdu)]
    assert got[0].frames == [1, 2] and got[1].frames == [2, 3, 4]


def test_wrapper_resync_after_garbage() -> None:
    w1, w2 = wrapper(AARQ), wrapper(GET_REQ)
    garbage = b"\x17\x03\x03\x00\x01\x00\x01\x99"  # holds 00 01 but no plausible header
    out = run(WrapperSplitter(), [w1 + garbage + w2 + w1[:12]])
    assert pieces(out) == [w1, w2]
    counts = [skipped(n) for n in notes(out)]
    assert counts == [len(garbage), 12]


def test_wrapper_capture_starting_inside_a_pdu() -> None:
    w1, w2 = wrapper(AARQ), wrapper(GET_REQ)
    splitter = WrapperSplitter()
    out = run(splitter, [w1[10:] + w2])
    assert pieces(out) == [w2]
    assert skipped(notes(out)[0]) == len(w1) - 10


def test_detect_transport() -> None:
    assert detect_transport(SNRM) == "hdlc"
    assert detect_transport(b"\x7e\x7e" + UA) == "hdlc"
    assert detect_transport(UA[:12]) == "hdlc"  # header complete, HCS valid
    assert detect_transport(GET[:12]) == "hdlc"
    broken = bytearray(GET)
    broken[8] ^= 0x55
    assert detect_transport(bytes(broken)[:12]) is None
    assert detect_transport(wrapper(AARQ)) == "wrapper"
    assert detect_transport(wrapper(AARQ) + wrapper(GET_REQ)) == "wrapper"
    assert detect_transport(wrapper(AARQ)[:9]) == "wrapper"
    assert detect_transport(AARQ) == "raw"
    assert detect_transport(b"\x90\x01\x01" + GET_REQ) == "raw"
    assert strip_llc_432(b"\x90\x01\x01" + GET_REQ) == GET_REQ
    assert strip_llc_432(GET_REQ) == GET_REQ
    assert detect_transport(b"\x17\x03\x03\x00\x20") is None  # TLS application data
    assert detect_transport(b"\x00\x01\x00\x10\x00\x01\x00\x05\x99") is None
    assert detect_transport(b"GET / HTTP/1.1\r\n") is None
    assert detect_transport(b"") is None


def test_find_start() -> None:
    assert find_start(UA[7:] + GET) == (len(UA) - 7, "hdlc")
    assert find_start(wrapper(AARQ)[5:] + wrapper(GET_REQ)) == (len(wrapper(AARQ)) - 5,
                                                                 "wrapper")
    assert find_start(b"\x01\x02\x03") is None


def test_split_hdlc_frames() -> None:
    assert split_hdlc_frames(SNRM + UA[1:] + b"\x7e" + GET) == [SNRM, UA, GET]
    assert split_hdlc_frames(b"\x01\x02") == []


def test_parse_port_spec() -> None:
    assert parse_port_spec("4059:wrapper") == (4059, "wrapper")
    assert parse_port_spec("4061:HDLC") == (4061, "hdlc")
    assert parse_port_spec("7000:raw") == (7000, "raw")
    for bad in ("4059", "4059:ftp", "x:hdlc", "0:hdlc", "70000:wrapper"):
        with pytest.raises(ValueError, match="bad port spec"):
            parse_port_spec(bad)


def test_hdlc_direction() -> None:
    assert hdlc_direction(SNRM) == "client->server"  # 2-byte destination, 1-byte source
    assert hdlc_direction(UA) == "server->client"
    assert hdlc_direction(SNRM_4BYTE) == "client->server"
    assert hdlc_direction(UA_4BYTE) == "server->client"
    # both addresses one byte: the control or the LLC decides, then the pair is remembered
    learned = DirectionLearner()
    assert hdlc_direction(hdlc(b"\x03", b"\x21", 0x93), learned) == "client->server"
    assert hdlc_direction(hdlc(b"\x21", b"\x03", 0x73), learned) == "server->client"
    i_resp = hdlc(b"\x21", b"\x03", 0x30, b"\xe6\xe7\x00\xc4\x01\xc1\x00\x06\x00\x00\x00\x01")
    assert hdlc_direction(i_resp) == "server->client"
    rr = hdlc(b"\x03", b"\x21", 0x31)
    assert hdlc_direction(rr) == "unknown"
    assert hdlc_direction(rr, learned) == "client->server"
    assert hdlc_direction(b"\x7e\xa0") == "unknown"
