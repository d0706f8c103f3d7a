"""The real tshark (4.0 and 4.4, as `tests/test_wireshark.py` installs them) shows what the
export carries besides records: a record longer than one pcapng option (its `dlmsd+:`
comments joined), the end-of-input findings as a packet of their own, and, from the
deciphering tap, a finding of the live machinery (the serial port lost) as a packet.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import test_wireshark
from test_export_events import COUNT, capture
from test_wireshark import SEED_KEYS, PtyPair, Wireshark, live_capture

from dissector import cli

#: The fixtures of `test_wireshark.py`: each Wireshark version installed, a pty pair.
wireshark = test_wireshark.wireshark
pty_pair = test_wireshark.pty_pair


def test_long_record_and_end_findings_in_tshark(wireshark: Wireshark, tmp_path: Path) -> None:
    cap, export = capture(tmp_path), tmp_path / "long.pcapng"
    assert cli.main(["read", str(cap), "-w", str(export)], out=io.StringIO()) == 0
    rows = [line.split("\t") for line in wireshark.run(
        "-r", str(export), "-T", "fields", "-e", "dlmsd.apdu", "-e", "dlmsd.event",
        "-e", "dlmsd.expert.code").stdout.splitlines()]
    assert rows == [["get-request", "", ""], ["get-response", "", ""],
                    ["", "end", "wrapper.skipped-bytes"]]
    # the packet list (4.4 fills `_ws.col.Info` of -T fields before the postdissectors run)
    lines = wireshark.run("-r", str(export)).stdout.splitlines()
    assert len(lines) == 3 and " DLMSD " in lines[2]
    assert lines[2].endswith(" end of input: 1 finding (wrapper.skipped-bytes)")
    # the whole array in the response's tree: 0, 1, ... 3,999 (the record is ~400 KB of JSON)
    tree = wireshark.run("-r", str(export), "-Y", 'dlmsd.apdu == "get-response"', "-T",
                         "fields", "-E", "occurrence=a", "-E", "aggregator=|",
                         "-e", "dlmsd.field").stdout
    values = [int(v) for v in re.findall(r"(?:^|\|)value=(\d+)(?=\||$)", tree.strip())]
    assert values == list(range(COUNT))
    expert = wireshark.run("-r", str(export), "-q", "-z", "expert").stdout
    assert re.search(r"\d+\s+\S+\s+DLMSD\s+wrapper\.skipped-bytes: frame 6: skipped 10 byte",
                     expert)


def test_deciphering_tap_carries_the_lost_port_as_a_packet(
        wireshark: Wireshark, pty_pair: PtyPair, tmp_path: Path) -> None:
    """The pseudo-terminal pair goes away after the seed case's frames: the tap's
    `serial.disconnected` warning reaches Wireshark as a packet (its standard error would
    be shown as a failure), and the capture still ends at `-a duration`."""
    out = tmp_path / "lost.pcapng"

    def line_gone() -> None:  # the line is gone: the tap reports it and keeps trying
        time.sleep(0.5)
        pty_pair.close()

    proc, _after_open, stderr = live_capture(wireshark, pty_pair, out, "dlms-decipher",
                                             f"keys:{SEED_KEYS}", then=line_gone)
    assert proc.returncode == 0, stderr
    rows = [line.split("\t") for line in wireshark.run(
        "-r", str(out), "-T", "fields", "-e", "dlmsd.apdu", "-e", "dlmsd.event",
        "-e", "dlmsd.expert.code").stdout.splitlines()]
    assert [r[0] for r in rows if r[0]] == ["aarq", "aare", "ded-action-request",
                                        "confirmed-service-error"]
    events = [r for r in rows if r[1]]
    assert events and events[0][1:] == ["finding", "serial.disconnected"]
    expert = wireshark.run("-r", str(out), "-q", "-z", "expert").stdout
    assert re.search(r"DLMSD\s+serial\.disconnected: ", expert)


def test_tshark_reads_no_event_packet_as_udp(wireshark: Wireshark, tmp_path: Path) -> None:
    """The event packets are not DLMS traffic: a filter on UDP 4059 leaves them out."""
    cap, export = capture(tmp_path), tmp_path / "long.pcapng"
    assert cli.main(["read", str(cap), "-w", str(export)], out=io.StringIO()) == 0
    rows = wireshark.run("-r", str(export), "-Y", "udp.port == 4059", "-T", "fields",
                         "-e", "frame.number").stdout.split()
    assert rows == ["1", "2"]
    rows = wireshark.run("-r", str(export), "-Y", "eth.type == 0x88b5", "-T", "fields",
                         "-e", "frame.number", "-e", "dlmsd.event").stdout.split()
    assert rows == ["3", "end"]
