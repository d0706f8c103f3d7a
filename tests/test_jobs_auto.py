"""`read --jobs auto`: one worker per CPU this process may use, output equal to the serial run."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import corpus_path

from dissector.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parent.parent


def usable() -> int:
    """What the operating system says this process may run on (not the project's code)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def read(*argv: str) -> subprocess.CompletedProcess[str]:
    """The real command, in its own process (as a user runs it)."""
    return subprocess.run([sys.executable, "-m", "dissector", "read", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_auto_is_the_cpus_this_process_may_use() -> None:
    args = build_parser().parse_args(["read", "x.pcap", "--jobs", "auto"])
    assert args.jobs == usable()
    assert build_parser().parse_args(["read", "x.pcap", "--jobs", "AUTO"]).jobs == usable()
    assert build_parser().parse_args(["read", "x.pcap", "--jobs", "3"]).jobs == 3
    assert build_parser().parse_args(["read", "x.pcap"]).jobs == 1


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity here")
def test_auto_follows_the_affinity_not_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process narrowed to some CPUs (taskset, a cpuset) takes only those."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 5, 7})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert build_parser().parse_args(["read", "x.pcap", "--jobs", "auto"]).jobs == 3


def test_jobs_refuses_what_is_neither_a_count_nor_auto() -> None:
    for bad in ("0", "-2", "many", ""):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["read", "x.pcap", "--jobs", bad])


def test_jobs_one_reads_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--jobs 1` (and `auto` on one CPU) never starts workers."""
    import dissector.analysis.parallel as parallel

    def no_workers(*_a: object, **_k: object) -> None:
        raise AssertionError("workers started")

    monkeypatch.setattr(parallel, "run_parallel", no_workers)
    capture = corpus_path("htanwar922_Output-Ciphered-Simple-Key.pcap")
    assert main(["read", str(capture), "--jobs", "1"], io.StringIO()) == 0
    if hasattr(os, "sched_getaffinity"):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
        assert main(["read", str(capture), "--jobs", "auto"], io.StringIO()) == 0


@pytest.mark.parametrize("mode", [["--json", "--stats"], []])
def test_auto_output_equals_the_serial_output(mode: list[str]) -> None:
    """Several links in two files read as one capture: record numbers, order, findings and
    the statistics (on stderr beside JSON) are the serial run's."""
    captures = [str(corpus_path(name)) for name in (
        "bearxiong99_sample.pcap", "htanwar922_Output-Ciphered-Simple-Key.pcap",
        "htanwar922_Output-EPRI.pcap")]
    serial = read(*captures, *mode)
    auto = read(*captures, *mode, "--jobs", "auto")
    assert serial.returncode == 0 and auto.returncode == 0, auto.stderr
    assert auto.stdout == serial.stdout and auto.stdout.count("\n") > 300
    assert auto.stderr == serial.stderr
