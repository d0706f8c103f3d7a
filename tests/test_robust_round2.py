"""Issue #14, second robustness round: capture files whose lengths lie (a decompression bomb, a
truncated or broken pcapng, records above 65,535 bytes), TCP segments held behind a hole,
findings piling up on captures without APDUs, the live serial record cut, and key options
(`@FILE`/`env:`, a key typed as a keystore path, a keystore writable by others).

Every hostile input is generated here, small; bounds are checked by counts and `tracemalloc`
peaks with wide margins, never by time.
"""

from __future__ import annotations

import gzip
import io
import struct
import sys
import tracemalloc
from pathlib import Path

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "fuzz"))
from capgen import ACK, TcpConversation, ether, ipv4, pcap, tcp

from dissector.analysis.capture import End, run_serial, units_of_capture
from dissector.analysis.pipeline import Dissector
from dissector.cli.main import main
from dissector.sources.capture import read_capture
from dissector.sources.tcp import TcpReassembler
from dissector.stages import Finding, Record

SEED = ROOT / "pcaps" / "seed-case"


# -- pcapng built by hand ------------------------------------------------------------------
def block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", kind, n) + body + struct.pack("<I", n)


SHB = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(linktype: int = 1) -> bytes:
    return block(1, struct.pack("<HHI", linktype, 0, 0))


def epb(data: bytes, ts: int = 1_700_000_000_000_000) -> bytes:
    return block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
                 + data)


def hdlc_record(n: int) -> bytes:
    """A serial (link type 147) record of `n` bytes: a valid-looking flag then noise."""
    return b"\x7e" + bytes((i * 7 + 1) % 251 for i in range(n - 1))


def capture_items(data: bytes) -> tuple[list[Record], list[Finding]]:
    records: list[Record] = []
    findings: list[Finding] = []
    for item in read_capture(io.BytesIO(data)):
        if isinstance(item, Record):
            records.append(item)
        elif isinstance(item, Finding):
            findings.append(item)
    return records, findings


# -- item 2: a block that claims more than the file should make us hold ---------------------
def test_gzip_bomb_block_is_skipped_with_bounded_memory() -> None:
    """A gzip'd pcapng whose second packet block claims 32 MiB (zeros, compressed to ~32 kB):
    a finding, memory far below the claim, and the records after it still read."""
    claim = 32 << 20
    head = struct.pack("<II", 6, claim + 12) + struct.pack("<IIIII", 0, 0, 0, claim - 20,
                                                           claim - 20)
    zero = bytes(1 << 20)
    stream = io.BytesIO()
    with gzip.GzipFile(fileobj=stream, mode="wb", compresslevel=1) as gz:
        gz.write(SHB + idb(147) + epb(hdlc_record(40)) + head)
        for _ in range(31):
            gz.write(zero)
        gz.write(bytes((1 << 20) - 20) + struct.pack("<I", claim + 12))
        gz.write(epb(hdlc_record(50)))
    tracemalloc.start()
    try:
        records, findings = capture_items(stream.getvalue())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak} bytes held for a block of {claim}"
    assert [f.code for f in findings] == ["capture.record-too-long"]
    assert findings[0].frame == 2
    assert [r.frame_no for r in records] == [1, 3]  # read on after the block


def test_broken_and_truncated_pcapng_are_findings(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A pcapng cut inside a block, or with a block whose two lengths differ: a capture.*
    finding in the output (rc 0: the records before it are read), nothing on stderr."""
    good = SHB + idb(147) + epb(hdlc_record(30))
    cut = good + epb(hdlc_record(30))[:-9]
    records, findings = capture_items(cut)
    assert len(records) == 1 and [f.code for f in findings] == ["capture.truncated"]
    bad = bytearray(good + epb(hdlc_record(30)) + epb(hdlc_record(30)))
    bad[len(good) + 4] += 4  # second packet block: first length no longer the trailing one
    records, findings = capture_items(bytes(bad))
    assert len(records) == 1 and [f.code for f in findings] == ["capture.unreadable"]
    path = tmp_path / "cut.pcapng"
    path.write_bytes(cut)
    assert main(["read", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "capture.truncated" in out
    assert "WARNING" not in err


# -- item 6: records above 65,535 bytes ---------------------------------------------------
@pytest.mark.parametrize("size", [69_000, 65_549])
def test_records_above_65535_are_read_whole(size: int) -> None:
    data = hdlc_record(size)
    records, findings = capture_items(SHB + idb(147) + epb(data))
    assert sum(len(r.data) for r in records) == size
    assert not [f for f in findings if f.code.startswith("capture.")]


def test_gro_frame_above_65535_is_not_a_tcp_gap() -> None:
    """A Linux GRO capture: one TCP segment of 65,495 bytes in a 65,549-byte frame, then the
    next segment: no bytes lost, no gap."""
    big = b"\x00\x01\x00\x10\x00\x01" + bytes(65_489)  # not a valid wrapper PDU; bytes only
    s1 = ether(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 4059, 1000, 1, ACK, big)))
    assert len(s1) > 65_535
    s2 = ether(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 4059, 1000 + len(big), 1, ACK,
                                                   b"\x00" * 10)))
    records, findings = capture_items(pcap([s1, s2]))
    assert not [f for f in findings if f.code == "tcp.gap"], findings
    assert sum(len(r.data) for r in records) == len(big) + 10


def test_pcap_record_beyond_the_format_limit_is_a_finding() -> None:
    """A pcap record header claiming 100 MB: a finding, not an allocation."""
    first = pcap([hdlc_record(20)], linktype=147)
    data = first + struct.pack("<IIII", 0, 0, 100_000_000, 100_000_000) + bytes(64)
    tracemalloc.start()
    try:
        records, findings = capture_items(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    assert len(records) == 1 and [f.code for f in findings] == ["capture.record-too-long"]


def test_serial_records_never_pass_the_snap_length() -> None:
    """`sniff serial -w`: a burst of 69 kB without a frame boundary is cut into records of at
    most MAX_RECORD bytes, and a real frame boundary is still where a record ends."""
    from dissector.live.serial import MAX_RECORD, next_record

    buf = bytearray(b"\x01" * 69_000)
    cuts = []
    while (end := next_record(buf)) > 0:
        cuts.append(end)
        del buf[:end]
    assert cuts == [MAX_RECORD] and len(buf) == 69_000 - MAX_RECORD
    assert MAX_RECORD <= 65_535
    frame = bytes.fromhex("7EA0106103527CE2E6E7000E060006DD487E")
    assert next_record(frame + b"\x7e") == len(frame)


# -- item 3: TCP segments behind a hole -----------------------------------------------------
def _descending(count: int, reassembler: TcpReassembler) -> list:
    """One connection: SYN, then one-byte segments in descending order behind a one-byte hole."""
    out = list(reassembler.packet(1, 0.0, "10.0.0.1", 40000, "10.0.0.2", 4059, 999, 0, 0x02,
                                  b""))
    for i in range(count, 0, -1):
        out += reassembler.packet(i + 1, 0.0, "10.0.0.1", 40000, "10.0.0.2", 4059, 1000 + i,
                                  0, 0x18, b"x")
    return out


def test_tcp_segments_behind_a_hole_are_bounded_by_count() -> None:
    count = 30_000
    tcp_r = TcpReassembler()
    tracemalloc.start()
    try:
        out = _descending(count, tcp_r)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    held = sum(s.buffered for c in tcp_r._conns.values() for s in c.streams.values())
    assert held <= 8192, held
    assert peak < 6 << 20, f"{peak} bytes for {count} one-byte segments"
    gaps = [f for f in out if isinstance(f, Finding) and f.code == "tcp.gap"]
    assert gaps and all("segments" in g.message for g in gaps)


def test_tcp_gap_message_says_what_happened() -> None:
    """A hole never filled, with data after it: not 'the capture ended before it arrived'."""
    tcp_r = TcpReassembler()
    out = _descending(3, tcp_r) + tcp_r.flush()
    gaps = [f for f in out if isinstance(f, Finding) and f.code == "tcp.gap"]
    assert len(gaps) == 1
    assert "ended before it arrived" not in gaps[0].message
    assert "bytes after them were" in gaps[0].message


# -- item 4: findings with no APDU to ride on ----------------------------------------------
def test_findings_without_apdus_are_folded() -> None:
    """1,500 short TCP connections to port 4059 that carry no DLMS: the end-of-input findings
    are bounded, one summary says how many were folded and names the first frames."""
    frames: list[bytes] = []
    for i in range(1500):
        conv = TcpConversation(client=(f"10.1.{i >> 8}.{i & 255}", 40000 + i))
        conv.send(True, b"GET / HTTP/1.0\r\n\r\n")
        conv.close()
        frames += conv.frames
    items = list(run_serial(Dissector(), units_of_capture(io.BytesIO(pcap(frames))),
                            lambda r: r))
    end = items[-1]
    assert isinstance(end, End) and len(items) == 1
    assert len(end.findings) <= 1001
    folded = [f for f in end.findings if f.code == "expert.folded"]
    assert len(folded) == 1 and "500 more framing.not-found" in folded[0].message
    assert "frame(s)" in folded[0].message


# -- item 7: key options -------------------------------------------------------------------
def _seed_keys() -> tuple[str, str]:
    import tomllib

    meter = tomllib.loads(SEED.with_suffix(".keys.toml").read_text())["meter"][0]
    return meter["ek"], meter["ak"]


def test_key_flags_from_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    ek, ak = _seed_keys()
    monkeypatch.delenv("DLMS_KEYS", raising=False)
    key_file = tmp_path / "ek"
    key_file.write_text(ek + "\n")
    monkeypatch.setenv("SEED_AK", ak)
    assert main(["read", str(SEED.with_suffix(".pcap")), "--ek", f"@{key_file}",
                 "--ak", "env:SEED_AK"]) == 0
    out, err = capsys.readouterr()
    assert "tag OK" in out
    assert ek.lower() not in (out + err).lower() and ak.lower() not in (out + err).lower()
    assert main(["read", str(SEED.with_suffix(".pcap")), "--ek", "@" + str(tmp_path / "no"),
                 "--ak", "env:NOT_SET_HERE"]) == 2


@pytest.mark.parametrize("command", [["decode", "00"], ["keys", "check"]])
def test_key_typed_as_keystore_path_is_not_repeated(command: list[str],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    ek, _ = _seed_keys()
    argv = [*command, ek] if command[0] == "keys" else [*command, "--keys", ek]
    assert main(argv) != 0
    out, err = capsys.readouterr()
    assert ek.lower() not in (out + err).lower()
    assert "looks like a key" in out + err


def test_keystore_writable_by_others_is_a_warning(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(SEED.with_suffix(".keys.toml").read_text())
    path.chmod(0o622)
    assert main(["keys", "check", str(path)]) == 0
    out, _ = capsys.readouterr()
    assert "writable by group/others" in out
