"""Hostile and broken input against the public entry points: `decode` (the dissector fed pasted
frames, and the command itself), `read` on generated captures (serial, TCP with holes and
retransmissions, UDP, damaged capture files), and the incremental splitters the live sources
use. Nothing raises, every run stays within a time bound, and every output format renders.

Shares its harness with the fuzz targets (fuzz/harness.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import struct
import sys
import time
from functools import cache

import pytest
from conftest import CORPUS, ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(ROOT / "fuzz"))
import capgen
import harness
from test_robust_layers import mutated, seeds

from dissector.analysis.pipeline import Dissector
from dissector.cli.main import main
from dissector.framing.hdlc import HdlcSplitter
from dissector.framing.splitter import WrapperSplitter
from dissector.sources.detect import StartFinder, find_start
from dissector.stages import Pdu

TIME_LIMIT = 5.0  # seconds for one generated input of a few kilobytes, every output format
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    took = time.perf_counter() - start
    assert took < TIME_LIMIT, f"{took:.1f}s"
    return out


def any_seed() -> st.SearchStrategy[bytes]:
    return st.deferred(lambda: st.sampled_from(
        [s for kind in ("hdlc", "wrapper", "apdu") for s in seeds().get(kind, [])[:400]]))


PDUS = st.one_of(mutated(any_seed()), any_seed(), st.binary(min_size=1, max_size=200))


# ------------------------------------------------------------------------------ decode

@SETTINGS
@given(units=st.lists(st.tuples(st.sampled_from(["hdlc", "wrapper", "raw"]), PDUS,
                                st.sampled_from(["unknown", "client->server",
                                                 "server->client"]),
                                st.sampled_from(["input", "tcp a-b"])),
                      min_size=1, max_size=8),
       keyed=st.booleans())
def test_dissector_any_units_every_format(units, keyed: bool) -> None:
    """Units as a live source or a capture hands them over, in any order, on one or two
    links: every record renders in every format, the end of input too."""
    dis = Dissector(harness.keystore() if keyed else None)

    def run() -> None:
        records = (rec for n, (transport, data, direction, link) in enumerate(units, 1)
                   for rec in dis.feed(Pdu(data, transport, [n], float(n), link, direction)))
        harness._render_all(records, harness.MODES)
        dis.finish()

    timed(run)


@SETTINGS
@given(lines=st.lists(PDUS, min_size=1, max_size=8), keyed=st.booleans())
def test_decode_path_any_lines(lines: list[bytes], keyed: bool) -> None:
    timed(harness.run_decode, lines, keyed)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(st.one_of(
    PDUS.map(lambda b: b.hex()),
    PDUS.map(lambda b: " ".join(f"0x{x:02X}" for x in b)),
    st.text(alphabet="0123456789abcdefABCDEF :,-xZ\t", max_size=80)), min_size=1, max_size=4),
       mode=st.sampled_from([[], ["-V"], ["--json"]]))
def test_decode_command_any_text(lines: list[str], mode: list[str]) -> None:
    """The command itself: exit 0, or 2 with one line naming the problem; never a traceback."""
    lines = [line for line in lines if line.strip() and not line.lstrip().startswith("-")]
    if not lines:
        return
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = timed(main, ["decode", *mode, *lines], io.StringIO())
    assert status in (0, 2), err.getvalue()
    if status == 2:
        assert err.getvalue().startswith("dlms-dissect: ")
        assert len(err.getvalue().strip().splitlines()) == 1


# -------------------------------------------------------------------------------- read

@SETTINGS
@given(kind=st.integers(0, 3), chunks=st.lists(
    st.one_of(PDUS, st.binary(max_size=64), PDUS.map(lambda b: b[: len(b) // 2])),
    min_size=1, max_size=10), keyed=st.booleans())
def test_read_generated_capture(kind: int, chunks: list[bytes], keyed: bool) -> None:
    """Serial HDLC, TCP (with handshake; or with holes and overlaps), UDP: PDUs, damaged PDUs,
    halves of PDUs and noise."""
    texts = timed(harness.run_capture, harness.synth_capture(kind, chunks), keyed)
    assert texts is not None


LINKTYPES = [0, 1, 101, 108, 113, 147, 228, 276, 12345]


@SETTINGS
@given(linktype=st.sampled_from(LINKTYPES),
       records=st.lists(st.one_of(st.binary(max_size=120), PDUS,
                                  PDUS.map(lambda b: capgen.ether(capgen.ipv4(
                                      "10.0.0.1", "10.0.0.2", 6,
                                      capgen.tcp(40000, 4059, 1, 1, 0x18, b))))),
                        min_size=1, max_size=10))
def test_read_capture_of_arbitrary_records(linktype: int, records: list[bytes]) -> None:
    """Records whose link-layer, IP and TCP headers are anything at all."""
    texts = timed(harness.run_capture, capgen.pcap(records, linktype), False)
    assert texts is not None


@cache
def small_captures() -> list[bytes]:
    files = sorted((ROOT / "pcaps").glob("*.pcap*"))
    if CORPUS.is_dir():
        files += sorted(CORPUS.glob("*.pcap*")) + sorted(CORPUS.glob("interop/*/capture.pcap*"))
    return [f.read_bytes() for f in files if f.stat().st_size <= 12_000]


@SETTINGS
@given(data=mutated(st.deferred(lambda: st.sampled_from(small_captures()))))
def test_read_mutated_capture_files(data: bytes) -> None:
    """Real capture files with their bytes damaged: a clear error (not a capture) or a
    dissection, never an exception."""
    timed(harness.run_capture, data, True, ("summary",))


def test_read_truncated_capture_files() -> None:
    """Every real capture cut at many points, pcapng block boundaries included."""
    for data in small_captures()[:12]:
        for cut in range(24, len(data), max(1, len(data) // 25)):
            timed(harness.run_capture, data[:cut], False, ("summary",))


def test_read_capture_with_absurd_record_lengths(tmp_path) -> None:
    """A pcap whose record header claims more than the file holds or than any snaplen."""
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for caplen in (70000, 0xFFFFFFFF, 100):
        rec = struct.pack("<IIII", 0, 0, caplen, caplen) + b"\x00" * 60
        out = harness.run_capture(header + rec + rec, False, ("summary",))
        assert out is None or isinstance(out, list)


# ---------------------------------------------------------------------- live splitters

CHUNKS = st.lists(st.integers(1, 64), min_size=1, max_size=40)


def _pieces(items: list) -> list[bytes]:
    return [p.data for p in items if isinstance(p, Pdu)]


def _feed_in_chunks(splitter, data: bytes, sizes: list[int]) -> list:
    out, pos, i = [], 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        out += splitter.feed(data[pos : pos + n], i + 1, float(i))
        pos += n
        i += 1
        assert splitter.buffered <= 0x7FF + 2 + 0xFFFF + 8
    return out + splitter.flush()


@SETTINGS
@given(parts=st.lists(PDUS, min_size=1, max_size=12), sizes=CHUNKS,
       which=st.sampled_from([HdlcSplitter, WrapperSplitter]))
def test_splitters_cut_the_same_however_bytes_arrive(parts, sizes, which) -> None:
    """A live line delivers bytes in arbitrary pieces: the PDUs cut are those of the whole
    stream at once, the buffer stays bounded, and nothing raises."""
    stream = b"".join(parts)
    one = which()
    whole = _pieces(one.feed(stream) + one.flush())
    chunked = _pieces(timed(_feed_in_chunks, which(), stream, sizes))
    assert chunked == whole


@SETTINGS
@given(parts=st.lists(st.one_of(PDUS, st.binary(max_size=40)), min_size=1, max_size=10),
       sizes=CHUNKS, keep=st.integers(20, 400))
def test_start_finder_agrees_with_find_start(parts, sizes, keep: int) -> None:
    """The incremental search for the first PDU of a stream finds what `find_start` finds in
    the bytes held, records arriving in pieces and the oldest dropped beyond `keep` bytes."""
    stream = b"".join(parts)
    finder, pos, i, records, dropped = StartFinder(), 0, 0, [], 0
    while pos < len(stream):
        record = stream[pos : pos + sizes[i % len(sizes)]]
        pos += len(record)
        i += 1
        records.append(record)
        got = finder.feed(record)
        want = find_start(b"".join(records))
        assert got == (None if want is None else (want[0] + dropped, want[1]))
        if got is not None:
            break
        while sum(map(len, records)) > keep and len(records) > 1:
            dropped += len(records.pop(0))
            finder.drop(dropped)


@pytest.mark.parametrize("pattern,size", [
    (bytes(range(1, 0x7E))[:100], 2_000_000),  # no flag, no wrapper version
    (b"\x7e\xa7\xff\x02\x03\x21\x10\x00\x00", 500_000),  # 2 KB frame headers, bad HCS
    (b"\x00\x01\x00\x10\x00\x01\xff\xff\xc0", 500_000),  # 64 KB wrapper headers
], ids=["plain", "hdlc-headers", "wrapper-headers"])
def test_noise_on_a_dlms_port_is_read_in_linear_time(pattern: bytes, size: int) -> None:
    """Non-DLMS bytes in 100-byte TCP segments on port 4059: looking for the framing of the
    stream examines each offset once (it used to rescan all it held for every segment)."""
    conv = capgen.TcpConversation()
    data = pattern * (size // len(pattern))
    for i in range(0, len(data), 100):
        conv.send(True, data[i : i + 100])
    conv.close()
    capture = capgen.pcap(conv.frames)
    start = time.perf_counter()
    harness.run_capture(capture, False, ("summary",))
    assert time.perf_counter() - start < 20


def test_serial_channel_of_the_live_sniffer() -> None:
    """The serial sniffer's channel (sign-on text and HDLC on one line), fed in pieces."""
    from dissector.framing.serial import SerialDemux

    channel = SerialDemux
    streams = [b"/?!\r\n", b"/ABC5XYZ\r\n", b"\x06050\r\n", b"/" + b"A" * 5000,
               b"\x7e\xa0" * 3000, b"/?" + bytes(range(256)) * 8]
    streams += [b"".join(seeds()["hdlc"][i : i + 20]) for i in range(0, 200, 20)]
    for data in streams:
        ch = channel()
        for i in range(0, len(data), 7):
            timed(ch.feed, data[i : i + 7], i, float(i))
        ch.silence()
        ch.flush()


# ---------------------------------------------------------------- crashes found by fuzzing

#: Inputs the fuzzers found that stopped the dissector (fixed), minimised: regression tests.
KNOWN_CRASHES = {
    "aare-without-conformance": (
        ["6129060774050801020100be10040e080006c40001"],
        "dissector/tracker.py Tracker._aare: int(inner.conformance) on an AARE whose "
        "initiate-response has no conformance (TypeError, exit 3)"),
    "response-without-security-header": (
        ["C9113000000001" + "00" * 12, "CD00"],
        "dissector/tracker.py Tracker._downgrade: formats got['control'] with :02X when the "
        "response's ciphered content is empty (security control None) (TypeError, exit 3)"),
}


@pytest.mark.parametrize("name", sorted(KNOWN_CRASHES))
def test_known_crash(name: str) -> None:
    lines = KNOWN_CRASHES[name][0]
    harness.run_decode([bytes.fromhex(x) for x in lines], keyed=False)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["decode", *lines], io.StringIO()) == 0, err.getvalue()


@pytest.mark.parametrize("sc", ["2C", "AC", "24", "32"])
def test_unsupported_suite_with_keys_is_a_finding(sc: str) -> None:
    """Found by fuzzing: keys/context.py KeyContext.decipher let keys.gcm.CipherInputError out
    of its keystream fallback (suite 3..15, or suite 2 with a 16-byte key): exit 3. Now a
    finding on the envelope."""
    apdu = "DB084142434445464748" + "0F" + sc + "00000001" + "00112233445566778899"
    out = io.StringIO()
    assert main(["decode", "--json", apdu, "--ek", "000102030405060708090A0B0C0D0E0F",
                 "--ak", "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"], out) == 0
    row = json.loads(out.getvalue().splitlines()[0])
    assert any(f["code"].startswith("security.") for f in row["expert"]), row["expert"]


@SETTINGS
@given(buf=st.one_of(st.binary(max_size=300), PDUS), after_flag=st.booleans())
def test_serial_record_cutting_of_the_live_sniffer(buf: bytes, after_flag: bool) -> None:
    """Where the serial reader ends a capture record: within the bytes it has, never raising."""
    from dissector.live.serial import record_end

    end = record_end(buf, after_flag)
    assert 0 <= end <= len(buf)


def test_ipv6_payload_length_beyond_the_captured_bytes() -> None:
    """Found by fuzzing: an IPv6 header whose payload length exceeds the record, with an
    extension header, made `_ipv6` index past the data (IndexError)."""
    header = (b"\x60\x00\x00\x00" + (2000).to_bytes(2, "big") + b"\x00\x40"
              + b"\x20\x01" * 8 + b"\x20\x02" * 8)
    for ext in (b"\x06", b"\x00\x05" + b"\x00" * 6, b"\x2c\x00\x00"):
        ipv6 = header + ext  # hop-by-hop header(s) cut short
        for linktype, frame in ((0, b"\x1e\x00\x00\x00" + ipv6), (101, ipv6),
                                (1, capgen.ether(ipv6, 0x86DD))):
            assert harness.run_capture(capgen.pcap([frame], linktype), False,
                                       ("summary",)) is not None
