"""The Wireshark extcap "DLMS serial tap": the interface, DLT and config queries in Wireshark's
format, and a capture into a fifo (as Wireshark reads it) that Scapy reads back.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from scapy.utils import RawPcapNgReader, rdpcap
from test_live_serial import SERIAL, WAIT, PtyLine, corpus_records

from dissector import cli
from dissector.cli import extcap

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

LAUNCHER = [sys.executable, "-m", "dissector.cli.extcap"]
#: `{key=value}` groups of one extcap line.
GROUP = re.compile(r"\{([a-z]+)=([^{}]*)\}")


def ask(*args: str) -> tuple[int, list[str]]:
    """Run the launcher as Wireshark does; (exit status, output lines)."""
    done = subprocess.run([*LAUNCHER, *args], capture_output=True, text=True, timeout=WAIT)
    assert "Traceback" not in done.stderr
    return done.returncode, done.stdout.splitlines()


def parse(line: str) -> tuple[str, dict[str, str]]:
    kind, _, rest = line.partition(" ")
    assert GROUP.sub("", rest).strip() == "", f"stray text in {line!r}"
    return kind, dict(GROUP.findall(rest))


def test_interfaces_query() -> None:
    status, lines = ask("--extcap-interfaces", "--extcap-version=4.0")
    assert status == 0
    parsed = [parse(line) for line in lines]
    assert parsed[0][0] == "extcap" and parsed[0][1]["version"]
    interfaces = [groups for kind, groups in parsed if kind == "interface"]
    assert interfaces == [{"value": "dlms-serial", "display": "DLMS serial tap"}]


def test_dlts_query() -> None:
    status, lines = ask("--extcap-interface", "dlms-serial", "--extcap-dlts")
    assert status == 0
    assert [parse(line) for line in lines] == [
        ("dlt", {"number": "147", "name": "USER0", "display": "HDLC (IEC 62056-46)"})]


def test_config_query_describes_options_the_capture_accepts() -> None:
    status, lines = ask("--extcap-interface=dlms-serial", "--extcap-config",
                        "--some-future-wireshark-option", "x")  # unknown options are ignored
    assert status == 0
    parsed = [parse(line) for line in lines]
    args = {g["number"]: g for kind, g in parsed if kind == "arg"}
    values = [g for kind, g in parsed if kind == "value"]
    assert {kind for kind, _ in parsed} <= {"arg", "value"}
    assert all({"call", "display", "type"} <= set(g) for g in args.values())
    assert all(v["arg"] in args for v in values)
    by_call = {g["call"]: g for g in args.values()}
    assert by_call["--port"]["required"] == "true"
    assert by_call["--sign-on"]["type"] == "boolflag"
    bauds = [v for v in values if args[v["arg"]]["call"] == "--baud"]
    assert [v["value"] for v in bauds if v.get("default") == "true"] == ["9600"]
    # every option the dialog can pass parses, with each value it offers
    parser = extcap.build_parser()
    for g in args.values():
        offered = [v["value"] for v in values if v["arg"] == g["number"]] or ["1"]
        for value in offered:
            argv = [g["call"]] if g["type"] == "boolflag" else [g["call"], value]
            parser.parse_args(["--capture", "--fifo", "f", *argv])


def test_unknown_interface_is_refused() -> None:
    status, _ = ask("--extcap-interface", "other", "--extcap-dlts")
    assert status == 1


def test_cli_extcap_subcommand_and_install(tmp_path: Path) -> None:
    out = io.StringIO()
    assert cli.main(["extcap", "--extcap-interfaces"], out=out) == 0
    assert "interface {value=dlms-serial}{display=DLMS serial tap}" in out.getvalue()
    out = io.StringIO()
    assert cli.main(["extcap", "--install", str(tmp_path / "extcap")], out=out) == 0
    launcher = tmp_path / "extcap" / "dlms-serial-tap"
    assert os.access(launcher, os.X_OK)
    done = subprocess.run([str(launcher), "--extcap-interfaces"], capture_output=True,
                          text=True, timeout=WAIT)
    assert done.returncode == 0 and "{value=dlms-serial}" in done.stdout


class FifoReader:
    """Wireshark's end of the fifo: reads everything into memory."""

    def __init__(self, path: Path, stop_after: int | None = None) -> None:
        self.path = path
        self.stop_after = stop_after
        self.data = bytearray()
        self.opened = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with open(self.path, "rb", buffering=0) as fifo:
            self.opened.set()
            while chunk := fifo.read(65536):
                self.data += chunk
                if self.stop_after is not None and len(self.data) >= self.stop_after:
                    return  # Wireshark stopped reading

    def payload(self) -> bytes:
        with contextlib.suppress(Exception):  # incomplete blocks while the capture runs
            return b"".join(d for d, _ in RawPcapNgReader(io.BytesIO(bytes(self.data))))
        return b""


def start_capture(tmp_path: Path, port: Path, reader_stop: int | None = None
                  ) -> tuple[subprocess.Popen[str], FifoReader]:
    fifo = tmp_path / "wireshark.fifo"
    os.mkfifo(fifo)
    reader = FifoReader(fifo, reader_stop)
    proc = subprocess.Popen([*LAUNCHER, "--capture", "--extcap-interface", "dlms-serial",
                             "--fifo", str(fifo), "--port", str(port), "--baud", "9600",
                             "--extcap-capture-filter", ""],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reader.opened.wait(WAIT), "the extcap never opened the fifo"
    return proc, reader


def test_capture_into_fifo_reads_back_with_scapy(tmp_path: Path) -> None:
    frames = [r.data for r in corpus_records(SERIAL, "capture.pcap")]
    line = PtyLine(tmp_path / "ttyWS")
    fed = bytearray()
    try:
        proc, reader = start_capture(tmp_path, line.path)
        try:
            for frame in frames:
                line.write(frame, fed)
            deadline = time.monotonic() + WAIT
            while reader.payload() != bytes(fed) and time.monotonic() < deadline:
                time.sleep(0.05)  # each record reaches Wireshark while the capture runs
            assert reader.payload() == bytes(fed)
            proc.send_signal(signal.SIGTERM)  # Wireshark's stop button
            _out, err = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
        reader.thread.join(WAIT)
    finally:
        line.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    packets = rdpcap(io.BytesIO(bytes(reader.data)))
    assert b"".join(bytes(p) for p in packets) == bytes(fed)
    assert len(packets) == len(frames)  # one record per HDLC frame
    assert {meta.linktype for _, meta in RawPcapNgReader(io.BytesIO(bytes(reader.data)))} == {147}


def test_capture_ends_quietly_when_wireshark_stops_reading(tmp_path: Path) -> None:
    frames = [r.data for r in corpus_records(SERIAL, "capture.pcap")]
    line = PtyLine(tmp_path / "ttyWS2")
    try:
        proc, reader = start_capture(tmp_path, line.path, reader_stop=1)
        reader.thread.join(WAIT)  # read the header, then closed the fifo
        try:
            for frame in frames[:4]:
                line.write(frame)
            _out, err = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        line.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_capture_without_port_fails_with_a_message(tmp_path: Path) -> None:
    status, _ = ask("--capture", "--extcap-interface", "dlms-serial", "--fifo",
                    str(tmp_path / "f"), "--port", str(tmp_path / "missing"))
    assert status == 1
