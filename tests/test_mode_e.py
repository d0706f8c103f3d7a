"""IEC 62056-21 mode E sign-on layers and the sign-on -> HDLC framer.

Messages are built from the byte values IEC 62056-21 gives (request `/?!CR LF`, identification
`/XXXZ\\W<ident>CR LF` with `\\2` announcing binary mode, acknowledgement `ACK V Z Y CR LF`);
the HDLC frames are real ones from Dennisonius/wireshark_dlms sample_serial.pcap.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.packet import raw

from dissector.analysis.pipeline import Dissector
from dissector.framing.hdlc import HdlcSplitter
from dissector.framing.mbus import looks_like_mbus
from dissector.framing.serial import SerialDemux
from dissector.stages import Pdu
from layers.expert import Finding, findings_of
from layers.iec62056_21 import (
    ModeE,
    ModeEAck,
    ModeEIdentification,
    ModeERequest,
    ModeEUnknown,
    baud_rate,
    describe_ack,
    describe_identification,
    describe_mode_e,
    describe_request,
    looks_like_mode_e,
    message_length,
)

CR_LF = b"\r\n"
REQUEST = b"/?!" + CR_LF
REQUEST_ADDRESSED = b"/?12345678!" + CR_LF
IDENTIFICATION = b"/XYZ5\\2METER-0001" + CR_LF  # 9600 Bd, binary mode (HDLC) available
ACK_HDLC = bytes([0x06]) + b"252" + CR_LF  # HDLC protocol procedure, 9600 Bd, binary mode
ACK_READOUT = bytes([0x06]) + b"050" + CR_LF  # normal protocol procedure, data readout
SNRM = bytes.fromhex("7ea0080221619363977e")
UA = bytes.fromhex("7ea01f61022173e1e2818012050180060180070400000001080400000001533b7e")
GET = bytes.fromhex("7ea01a022161541887e6e600c001c100030100200700ff020085837e")
SIGN_ON = REQUEST + IDENTIFICATION + ACK_HDLC
ALL = [REQUEST, REQUEST_ADDRESSED, IDENTIFICATION, ACK_HDLC, ACK_READOUT,
       b"/ABc4MT174" + CR_LF]


def run(stream: bytes, step: int) -> list:
    demux = SerialDemux("serial0")
    events = []
    for i in range(0, len(stream), step):
        events += demux.feed(stream[i : i + step], i)
    return events + demux.flush()


def kinds(events: list) -> list[str]:
    """Sign-on messages by kind, other PDUs by transport, findings by code."""
    return [ModeE(e.data).kind if isinstance(e, Pdu) and e.transport == "mode-e" else
            e.transport if isinstance(e, Pdu) else e.code for e in events]


def dissect(events: list) -> list:
    dis = Dissector()
    return [r for e in events for r in dis.process(e)]


@pytest.mark.parametrize("step", [len(SIGN_ON) + 100, 1, 2, 5, 13])
def test_sign_on_then_hdlc(step: int) -> None:
    events = run(SIGN_ON + SNRM + UA + GET, step)
    assert kinds(events) == ["sign-on", "identification", "acknowledge", "hdlc", "hdlc", "hdlc"]
    assert [e.data for e in events[:3]] == [REQUEST, IDENTIFICATION, ACK_HDLC]
    assert [e.data for e in events[3:]] == [SNRM, UA, GET]
    assert all(not e.findings for e in events)
    first_hdlc = len(SIGN_ON)
    assert events[3].frames[0] == first_hdlc - first_hdlc % step
    records = dissect(events)
    assert [r.direction for r in records[:3]] == ["client->server", "server->client",
                                                  "client->server"]
    assert [raw(r.packet) for r in records[:3]] == [REQUEST, IDENTIFICATION, ACK_HDLC]
    assert all(not r.findings for r in records[:3])
    assert [r.apdu for r in records] == ["mode-e-sign-on", "mode-e-identification",
                                         "mode-e-acknowledge", "hdlc-snrm", "hdlc-ua",
                                         "get-request"]


def test_sign_on_shown_in_words() -> None:
    events = run(SIGN_ON + SNRM, len(SIGN_ON) + 20)
    packets = [r.packet for r in dissect(events)[:3]]
    words = [describe_mode_e(p) for p in packets]
    assert words == [
        "sign-on request (any device)",
        "identification XYZ 'METER-0001', 9600 Bd, mode E (HDLC)",
        "acknowledge: HDLC protocol procedure, 9600 Bd, binary mode (HDLC)",
    ]
    assert packets[0].summary() == words[0]


def test_identification_fields() -> None:
    ident = ModeE(IDENTIFICATION)
    assert isinstance(ident, ModeEIdentification)
    assert (ident.manufacturer, ident.baud, ident.enhanced, ident.identification) == (
        b"XYZ", b"5", b"\\2", b"METER-0001")
    assert ident.mode_e and not findings_of(ident)
    plain = ModeE(b"/ABc4MT174" + CR_LF)
    assert not plain.mode_e and plain.enhanced == b""
    assert describe_identification(plain) == (
        "identification ABc 'MT174', 4800 Bd, 20 ms reaction time")
    built = ModeEIdentification(manufacturer=b"XYZ", baud=b"5", identification=b"METER-0001")
    assert raw(built) == IDENTIFICATION


def test_acknowledgement_fields() -> None:
    ack = ModeE(ACK_HDLC)
    assert isinstance(ack, ModeEAck) and ack.hdlc
    assert (ack.protocol, ack.baud, ack.mode) == (b"2", b"5", b"2")
    assert raw(ModeEAck()) == ACK_HDLC
    readout = ModeE(ACK_READOUT)
    assert not readout.hdlc
    assert describe_ack(readout) == "acknowledge: normal protocol procedure, 9600 Bd, data readout"
    programming = ModeE(bytes([0x06]) + b"141" + CR_LF)
    assert describe_ack(programming) == (
        "acknowledge: secondary protocol procedure, 4800 Bd, programming mode")


def test_request_fields() -> None:
    req = ModeE(REQUEST_ADDRESSED)
    assert isinstance(req, ModeERequest) and req.address == b"12345678"
    assert describe_request(req) == "sign-on request to device '12345678'"
    assert raw(ModeERequest()) == REQUEST
    assert raw(ModeERequest(address=b"12345678")) == REQUEST_ADDRESSED


@pytest.mark.parametrize(("char", "rate"), [("0", 300), ("1", 600), ("2", 1200), ("3", 2400),
                                            ("4", 4800), ("5", 9600), ("6", 19200),
                                            ("A", 600), ("E", 9600), ("F", 19200),
                                            ("7", None), ("Z", None)])
def test_baud_rate_characters(char: str, rate: int | None) -> None:
    assert baud_rate(char) == rate


def test_round_trip_detection_and_lengths() -> None:
    for wire in ALL:
        pkt = ModeE(wire)
        assert raw(pkt) == wire
        assert not [f for f in findings_of(pkt) if f.severity != "note"], findings_of(pkt)
        assert message_length(wire) == len(wire)
        assert looks_like_mode_e(wire) and looks_like_mode_e(wire[:3])
        assert not looks_like_mbus(wire)
    for other in (SNRM, bytes.fromhex("0600010203"), bytes.fromhex("c001c100030100"),
                  b"hello" + CR_LF, b""):
        assert not looks_like_mode_e(other)


def test_truncated_messages_give_findings() -> None:
    for wire in ALL:
        for cut in range(1, len(wire)):
            pkt = ModeE(wire[:cut])
            assert findings_of(pkt), (wire, cut)
            assert raw(pkt) == wire[:cut]
            assert message_length(wire[:cut]) == 0
    unknown = ModeE(b"hello" + CR_LF)
    assert isinstance(unknown, ModeEUnknown)
    assert [f.code for f in findings_of(unknown)] == ["mode-e.unknown"]
    long_ident = ModeE(b"/XYZ5" + b"A" * 20 + CR_LF)
    assert [f.code for f in findings_of(long_ident)] == ["mode-e.long-identification"]


def test_hdlc_without_sign_on_and_a_second_session() -> None:
    demux = SerialDemux("input")
    events = demux.feed(SNRM + UA, 1)
    assert kinds(events) == ["hdlc", "hdlc"] and isinstance(demux.binary, HdlcSplitter)
    events = demux.feed(SIGN_ON, 2) + demux.feed(GET, 3) + demux.flush()
    assert kinds(events) == ["sign-on", "identification", "acknowledge", "hdlc"]
    assert events[-1].frames == [3]


def test_noise_and_data_readout_are_not_hdlc() -> None:
    events = run(b"\x00\x00" + REQUEST + IDENTIFICATION + ACK_READOUT + b"\x02data\x03x", 4)
    assert kinds(events) == ["mode-e.skipped-bytes", "sign-on", "identification",
                             "acknowledge", "mode-e.skipped-bytes"]
    assert isinstance(events[0], Finding) and "skipped 2 byte(s)" in events[0].message


@settings(max_examples=200, deadline=None)
@given(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", min_size=3, max_size=3),
       st.sampled_from("0123456ABCDEF"), st.booleans(),
       st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="\\"),
               max_size=16),
       st.sampled_from("012"), st.sampled_from("0123456"), st.sampled_from("012"))
def test_hypothesis_messages_round_trip(manufacturer: str, baud: str, enhanced: bool,
                                        ident: str, v: str, z: str, y: str) -> None:
    wire = (f"/{manufacturer}{baud}" + ("\\2" if enhanced else "") + ident).encode() + CR_LF
    pkt = ModeE(wire)
    assert isinstance(pkt, ModeEIdentification) and raw(pkt) == wire
    assert pkt.manufacturer.decode() == manufacturer and pkt.identification.decode() == ident
    assert pkt.mode_e is enhanced and baud_rate(baud) is not None
    ack = bytes([0x06]) + f"{v}{z}{y}".encode() + CR_LF
    assert raw(ModeE(ack)) == ack and message_length(ack) == 6
    demux = SerialDemux("input")
    events = demux.feed(REQUEST + wire + ack)
    assert kinds(events) == ["sign-on", "identification", "acknowledge"]
    assert ModeE(ack).hdlc is (v == y == "2")  # the acknowledgement selects HDLC
    assert kinds(demux.feed(SNRM) + demux.flush()) == ["hdlc"]  # a flag starts HDLC anyway


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.sampled_from([b"", b"/", b"/?", b"\x06", b"\x062"]))
def test_hypothesis_random_bytes_never_raise(data: bytes, prefix: bytes) -> None:
    wire = prefix + data
    if wire:
        pkt = ModeE(wire)
        assert raw(pkt) == wire
        findings_of(pkt)
    looks_like_mode_e(wire)
    run(wire, 7)
