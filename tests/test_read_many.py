"""`read` over several files (one capture cut into ring-buffer files) and `--jobs N` over many
links: the output is the serial output of the whole capture, record for record."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from conftest import CORPUS
from scapy.utils import RawPcapReader, RawPcapWriter

from dissector.cli.main import main

SIMPLE_KEY = CORPUS / "htanwar922_Output-Ciphered-Simple-Key.pcap"
MANY = [CORPUS / "bearxiong99_sample.pcap", SIMPLE_KEY,
        CORPUS / "htanwar922_Output-Ciphered-HLS-AuthEnc.pcap",
        CORPUS / "Circutor_dlms-analysis_dlms.pcap", CORPUS / "htanwar922_Output-EPRI.pcap"]


def read(*argv: str) -> str:
    """stdout and stderr (where --stats goes beside JSON records) of one `read`."""
    out = io.StringIO()
    with contextlib.redirect_stderr(out):
        assert main(["read", *argv], out) == 0
    return out.getvalue()


def split(capture: Path, parts: int, folder: Path) -> list[str]:
    """The capture cut into `parts` pcap files of consecutive records (as tshark -b would)."""
    reader = RawPcapReader(str(capture))
    records = list(reader)
    linktype = reader.linktype
    reader.close()
    size = -(-len(records) // parts)
    paths = []
    for i in range(parts):
        path = folder / f"part{i}.pcap"
        writer = RawPcapWriter(str(path), linktype=linktype)
        writer.write_header(None)
        for data, meta in records[i * size:(i + 1) * size]:
            writer.write_packet(data, sec=meta.sec, usec=meta.usec, caplen=len(data),
                                wirelen=meta.wirelen)
        writer.close()
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("parts", [2, 5])
def test_ring_buffer_files_read_as_one_capture(tmp_path: Path, parts: int) -> None:
    """The TCP stream and the association go on across the cut; frame numbers go on."""
    whole = read(str(SIMPLE_KEY), "--json")
    pieces = read(*split(SIMPLE_KEY, parts, tmp_path), "--json")
    rows = [json.loads(line) for line in pieces.splitlines()]
    assert pieces == whole
    frames = [f for r in rows for f in r["frames"]]
    assert len(rows) == 282 and frames == sorted(frames)
    assert frames[-1] == len(list(RawPcapReader(str(SIMPLE_KEY))))


def test_a_file_that_cannot_be_read_stops_before_any_output(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture")
    out, err = io.StringIO(), io.StringIO()
    import contextlib

    with contextlib.redirect_stderr(err):
        status = main(["read", str(SIMPLE_KEY), str(bad)], out)
    assert status != 0 and out.getvalue() == ""
    assert "bad.pcap" in err.getvalue() and "not a pcap" in err.getvalue()


@pytest.mark.parametrize("mode", [["--json"], [], ["-V"]])
def test_jobs_output_equals_serial_over_many_links(mode: list[str]) -> None:
    """Records of different links interleave and go to different workers: numbering, order,
    end-of-input findings and --stats are those of the serial run."""
    serial = read(*map(str, MANY), *mode, "--stats")
    for jobs in ("2", "3"):
        assert read(*map(str, MANY), *mode, "--stats", "--jobs", jobs) == serial
    if mode == ["--json"]:
        rows = [json.loads(line) for line in serial.splitlines() if line.startswith('{"number"')]
        assert [r["number"] for r in rows] == list(range(1, len(rows) + 1))
        assert len({r["link"] for r in rows}) >= 5


def test_jobs_with_a_filter_on_the_record_number() -> None:
    """Only the serial run knows the numbers while filtering: the output is still the same."""
    argv = [*map(str, MANY), "--json", "-Y", "number > 300 and number <= 310"]
    serial = read(*argv)
    assert read(*argv, "--jobs", "2") == serial
    assert [json.loads(x)["number"] for x in serial.splitlines()] == list(range(301, 311))


def test_jobs_with_few_units_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent stops sending and waits for answers when the bound on units in flight is
    reached: with a bound of 8 units and messages of 2, the output is still the serial one."""
    import dissector.analysis.parallel as parallel

    serial = read(*map(str, MANY), "--json", "--stats")
    monkeypatch.setattr(parallel, "IN_FLIGHT", 8)
    monkeypatch.setattr(parallel, "BATCH", 2)
    assert read(*map(str, MANY), "--json", "--stats", "--jobs", "3") == serial


FAILING_WORKER = """
import os
import sys
import dissector.analysis.parallel as parallel
from dissector.output.render import Rendered
from keys.keystore import Keystore

PARENT = os.getpid()

def render(rec):
    if os.getpid() != PARENT:  # in the worker only (the parent dissects a share too)
        raise RuntimeError(f"record {rec.number} cannot be formatted")
    return Rendered("x\\n", "summary")

try:
    list(parallel.run_parallel(sys.argv[1:], None, Keystore([]), 2, render))
except parallel.WorkerError as exc:
    print(exc)
"""


def test_a_failing_worker_is_an_error_not_a_hang() -> None:
    """A worker that raises: the parent stops with an error naming what the worker raised, and
    the process ends (units the worker left unread do not hold it at exit)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", FAILING_WORKER, *map(str, MANY)],
                          capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert "worker 0 failed: RuntimeError: record" in proc.stdout
    assert "cannot be formatted" in proc.stdout


KILLED_WORKER = FAILING_WORKER.replace(
    'raise RuntimeError(f"record {rec.number} cannot be formatted")',
    "os.kill(os.getpid(), 9)  # as the OOM killer would: no word to the parent")


def test_a_killed_worker_is_an_error_not_a_hang() -> None:
    """A worker killed outright (SIGKILL, in the middle of its work): the parent finds its
    pipes broken and stops with an error, at once, whatever it was doing (sending units,
    waiting for answers)."""
    import subprocess
    import sys

    assert KILLED_WORKER != FAILING_WORKER
    proc = subprocess.run([sys.executable, "-c", KILLED_WORKER, *map(str, MANY)],
                          capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert "worker 0 ended" in proc.stdout and "exit code -9" in proc.stdout, proc.stdout


def test_jobs_export_fields_and_filter_equal_serial(tmp_path: Path) -> None:
    """What the parent dissects itself and what comes from the workers make the same `-w`
    export (byte for byte), the same `-T fields` columns and the same `-Y` selection as the
    serial run."""
    argv = [*map(str, MANY), "-T", "fields", "-e", "number", "-e", "apdu", "-e",
            "security.key_kind", "-e", "expert.code", "-Y", "!(apdu contains \"hdlc\")"]
    serial = read(*argv, "-w", str(tmp_path / "serial.pcapng"))
    assert serial.count("\n") > 20
    for jobs in ("2", "3"):
        out = tmp_path / f"jobs{jobs}.pcapng"
        assert read(*argv, "-w", str(out), "--jobs", jobs) == serial
        assert out.read_bytes() == (tmp_path / "serial.pcapng").read_bytes()
