"""The Wireshark extcap launcher without Wireshark: the interface, DLT and config queries in
the extcap format with argument types Wireshark 4.0 knows, the install, and captures into a
fifo (as Wireshark reads it) from a pseudo-terminal, read back with Scapy. `test_wireshark.py`
runs the same launcher under the real tshark.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

import pytest
from conftest import corpus_path
from scapy.layers.inet import TCP
from scapy.utils import PcapNgReader, RawPcapNgReader, RawPcapReader, rdpcap

from dissector import cli
from dissector.cli import extcap

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
            "from dissector.cli.extcap import main; sys.exit(main())"]
SERIAL = "g3_hdlc_serial_pty_gmac"
WAIT = 30.0
#: `{key=value}` groups of one extcap line.
GROUP = re.compile(r"\{([a-z]+)=([^{}]*)\}")
#: Argument types of the extcap protocol that Wireshark 4.0 knows (its extcap documentation).
TYPES_4_0 = {"integer", "unsigned", "long", "double", "string", "password", "boolean",
             "boolflag", "fileselect", "selector", "radio", "multicheck", "timestamp"}


def ask(*args: str) -> tuple[int, list[str]]:
    """Run the launcher as Wireshark does; (exit status, output lines)."""
    done = subprocess.run([*LAUNCHER, *args], capture_output=True, text=True, timeout=WAIT)
    assert "Traceback" not in done.stderr
    assert "Warning" not in done.stderr  # Wireshark shows an extcap's stderr as an error
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
    assert interfaces == [{"value": "dlms-serial", "display": "DLMS serial tap"},
                          {"value": "dlms-decipher", "display": "DLMS deciphering tap"}]


def test_dlts_query() -> None:
    status, lines = ask("--extcap-interface", "dlms-serial", "--extcap-dlts")
    assert status == 0
    assert [parse(line) for line in lines] == [
        ("dlt", {"number": "147", "name": "USER0", "display": "HDLC (IEC 62056-46)"})]
    status, lines = ask("--extcap-interface", "dlms-decipher", "--extcap-dlts")
    assert status == 0
    [(kind, groups)] = [parse(line) for line in lines]
    assert kind == "dlt" and (groups["number"], groups["name"]) == ("1", "EN10MB")


@pytest.mark.parametrize("interface", ["dlms-serial", "dlms-decipher"])
def test_config_query_uses_4_0_types_and_options_the_capture_accepts(interface: str) -> None:
    status, lines = ask(f"--extcap-interface={interface}", "--extcap-config",
                        "--some-future-wireshark-option", "x")  # unknown options are ignored
    assert status == 0
    parsed = [parse(line) for line in lines]
    args = {g["number"]: g for kind, g in parsed if kind == "arg"}
    values = [g for kind, g in parsed if kind == "value"]
    assert {kind for kind, _ in parsed} <= {"arg", "value"}
    assert all({"call", "display", "type"} <= set(g) for g in args.values())
    assert {g["type"] for g in args.values()} <= TYPES_4_0
    assert all(v["arg"] in args for v in values)
    by_call = {g["call"]: g for g in args.values()}
    assert by_call["--port"]["type"] == "string"  # a typed path: tshark -o ...port:/dev/...
    assert by_call["--port-found"]["type"] == "selector"
    assert by_call["--sign-on"]["type"] == "boolflag"
    bauds = [v for v in values if args[v["arg"]]["call"] == "--baud"]
    assert [v["value"] for v in bauds if v.get("default") == "true"] == ["9600"]
    if interface == "dlms-decipher":
        assert by_call["--keys"]["type"] == "fileselect"
        sources = [v["value"] for v in values if args[v["arg"]]["call"] == "--source"]
        assert sources == ["serial", "tcp-tap", "tcp-passive"]
    # every option the dialog can pass parses, with each value it offers
    parser = extcap.build_parser()
    for g in args.values():
        offered = [v["value"] for v in values if v["arg"] == g["number"]] or ["1"]
        for value in offered:
            argv = [g["call"]] if g["type"] == "boolflag" else [g["call"], value]
            parser.parse_args(["--capture", "--fifo", "f", *argv])


QUERIES = (["--extcap-interfaces"], ["--extcap-dlts", "--extcap-interface", "dlms-serial"],
           ["--extcap-config", "--extcap-interface", "dlms-decipher"])


def test_queries_wireshark_makes_at_start_load_no_dissector() -> None:
    """Wireshark runs the launcher for these at every start and interface refresh: they are
    answered without loading Scapy or the dissector (a launch was ~0.45 s, now ~0.14 s)."""
    root = Path(__file__).resolve().parent.parent
    code = ("import sys; from dissector.cli.extcap import main; rc = main(sys.argv[1:]); "
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('scapy', 'layers', 'keys') or m.startswith(('dissector.analysis', "
            "'dissector.output', 'dissector.sources', 'dissector.live', 'dissector.cli.common'))); "
            "print('LOADED', loaded, file=sys.stderr); sys.exit(rc)")
    for query in QUERIES:
        done = subprocess.run([sys.executable, "-c", code, *query], capture_output=True,
                              text=True, cwd=root, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(("extcap ", "interface ", "dlt ", "arg "))
        assert "LOADED []" in done.stderr, (query, done.stderr)


def test_unknown_interface_is_refused() -> None:
    status, _ = ask("--extcap-interface", "other", "--extcap-dlts")
    assert status == 1


def test_cli_extcap_subcommand_and_install(tmp_path: Path) -> None:
    out = io.StringIO()
    assert cli.main(["extcap", "--extcap-interfaces"], out=out) == 0
    assert "interface {value=dlms-serial}{display=DLMS serial tap}" in out.getvalue()
    folder = tmp_path / "extcap"
    folder.mkdir()
    (folder / "dlms-serial-tap").write_text("#!/bin/sh\n# Wireshark extcap launcher: DLMS "
                                            "serial tap (dlms-dissector)\n")
    out = io.StringIO()
    assert cli.main(["extcap", "--install", str(folder)], out=out) == 0
    launcher = folder / "dlms-extcap"
    assert os.access(launcher, os.X_OK)
    assert not (folder / "dlms-serial-tap").exists()  # an earlier version's launcher, replaced
    done = subprocess.run([str(launcher), "--extcap-interfaces"], capture_output=True,
                          text=True, timeout=WAIT, cwd=tmp_path)  # not from the source tree
    assert done.returncode == 0 and "{value=dlms-decipher}" in done.stdout
    assert done.stderr == ""


class PtyLine:
    """A pseudo-terminal behind a fixed path: the extcap opens the path, the test writes."""

    def __init__(self, path: Path) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.symlink(os.ttyname(self.slave), path)
        self.path = path

    def write(self, data: bytes) -> None:
        for i in range(0, len(data), 8):
            os.write(self.master, data[i:i + 8])
            time.sleep(8 * 10 / 38400)

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


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


def frames() -> list[bytes]:
    return [d for d, _ in RawPcapReader(str(corpus_path("interop", SERIAL, "capture.pcap")))]


def start_capture(tmp_path: Path, port: Path, *extra: str, reader_stop: int | None = None
                  ) -> tuple[subprocess.Popen[str], FifoReader]:
    fifo = tmp_path / "wireshark.fifo"
    os.mkfifo(fifo)
    reader = FifoReader(fifo, reader_stop)
    proc = subprocess.Popen([*LAUNCHER, "--capture", "--extcap-interface", "dlms-serial",
                             "--fifo", str(fifo), "--port", str(port), "--baud", "9600",
                             "--extcap-capture-filter", "", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reader.opened.wait(WAIT), "the extcap never opened the fifo"
    return proc, reader


def test_capture_into_fifo_reads_back_with_scapy(tmp_path: Path) -> None:
    sent = frames()
    line = PtyLine(tmp_path / "ttyWS")
    fed = bytearray()
    try:
        proc, reader = start_capture(tmp_path, line.path)
        try:
            time.sleep(1.0)  # the port opens after the fifo
            for frame in sent:
                line.write(frame)
                fed += frame
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
    packets = list(RawPcapNgReader(io.BytesIO(bytes(reader.data))))
    assert [d for d, _ in packets] == sent  # one record per HDLC frame
    assert {meta.linktype for _, meta in packets} == {147}


def test_capture_ends_quietly_when_wireshark_stops_reading(tmp_path: Path) -> None:
    line = PtyLine(tmp_path / "ttyWS2")
    try:
        proc, reader = start_capture(tmp_path, line.path, reader_stop=1)
        reader.thread.join(WAIT)  # read the header, then closed the fifo
        try:
            for frame in frames()[:4]:
                line.write(frame)
            _out, err = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        line.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize("interface", ["dlms-serial", "dlms-decipher"])
def test_capture_that_cannot_start_closes_the_fifo(tmp_path: Path, interface: str) -> None:
    """Wireshark waits on the fifo: an extcap that cannot capture opens and closes it, so the
    capture ends with the reason instead of hanging."""
    fifo = tmp_path / "wireshark.fifo"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    done = subprocess.run([*LAUNCHER, "--capture", "--extcap-interface", interface, "--fifo",
                           str(fifo), "--port", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=WAIT)
    reader.thread.join(WAIT)
    assert not reader.thread.is_alive() and reader.data == b""
    assert done.returncode == 1
    assert "missing" in done.stderr and "Traceback" not in done.stderr


def test_deciphering_tap_relays_tcp_and_streams_read_s_records(tmp_path: Path) -> None:
    """`--source tcp-tap`: a client and a meter replaying a corpus capture through the relay;
    the fifo gets one packet per APDU carrying what `read --json` says of the capture."""
    scenario = "c_gmac_authenc_ded"
    capture = corpus_path("interop", scenario, "capture.pcap")
    keys = json.loads(corpus_path("interop", scenario, "keys.json").read_text())
    turns = [(p[TCP].dport == 4059, bytes(p[TCP].payload)) for p in rdpcap(str(capture))
             if TCP in p and bytes(p[TCP].payload)]
    keyfile = tmp_path / "keys.toml"
    keyfile.write_text(f'[[meter]]\nname = "interop"\nek = "{keys["ek"]}"\n'
                       f'ak = "{keys["ak"]}"\n')
    keyfile.chmod(0o600)
    meter = socket.create_server(("127.0.0.1", 0))
    listen = socket.create_server(("127.0.0.1", 0))  # a free port for the relay
    relay_port = listen.getsockname()[1]
    listen.close()

    def recv_exactly(sock: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "connection closed early"
            data += chunk
        return data

    def serve() -> None:
        conn, _ = meter.accept()
        with conn:
            for to_meter, data in turns:
                if to_meter:
                    recv_exactly(conn, len(data))
                else:
                    conn.sendall(data)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    fifo = tmp_path / "wireshark.fifo"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    proc = subprocess.Popen([*LAUNCHER, "--capture", "--extcap-interface", "dlms-decipher",
                             "--fifo", str(fifo), "--source", "tcp-tap", "--keys", str(keyfile),
                             "--listen", f"127.0.0.1:{relay_port}", "--forward",
                             f"127.0.0.1:{meter.getsockname()[1]}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                client = socket.create_connection(("127.0.0.1", relay_port), timeout=WAIT)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        with client:
            for to_meter, data in turns:
                if to_meter:
                    client.sendall(data)
                else:
                    assert recv_exactly(client, len(data)) == data  # relayed unchanged
        server.join(WAIT)
        want = [json.loads(line) for line in _read_json(capture, keys)]
        while (sum("apdu" in c for c in _comments(reader)) < len(want)
               and time.monotonic() < deadline):
            time.sleep(0.1)  # each APDU reaches Wireshark while the capture runs
        proc.send_signal(signal.SIGTERM)  # Wireshark's stop button
        err = proc.communicate(timeout=WAIT)[1]
    finally:
        meter.close()
        if proc.poll() is None:
            proc.kill()
    reader.thread.join(WAIT)
    assert proc.returncode == 0, err
    assert err == ""  # Wireshark shows an extcap's stderr as an error
    comments = _comments(reader)
    got = [c for c in comments if "apdu" in c]
    # the tap's own findings are packets too (its standard error would be a failure)
    events = [c for c in comments if "apdu" not in c]
    assert [(e.get("event"), [f["code"] for f in e["expert"]]) for e in events] == \
        [("finding", ["tap.server-closed"])]  # the test's meter closes first
    assert events[0]["summary"].startswith("warning: tap.server-closed: the meter at ")
    fields = ("apdu", "direction", "plaintext", "inner")
    assert [tuple(g[f] for f in fields) for g in got] == [tuple(w[f] for f in fields)
                                                          for w in want]
    assert [(g["security"] or {}).get("key_kind") for g in got] == \
        [(w["security"] or {}).get("key_kind") for w in want]
    assert [(g["security"] or {}).get("tag_verified") for g in got] == \
        [(w["security"] or {}).get("tag_verified") for w in want]
    assert keys["dedicated_key"].lower() not in bytes(reader.data).hex()


def _read_json(capture: Path, keys: dict) -> list[str]:
    out = io.StringIO()
    assert cli.main(["read", str(capture), "--json", "--ek", keys["ek"], "--ak", keys["ak"]],
                    out=out) == 0
    return [line for line in out.getvalue().splitlines() if '"apdu"' in line]


def _comments(reader: FifoReader) -> list[dict]:
    """The `dlmsd:` comments of the complete packets read so far."""
    found = []
    with contextlib.suppress(Exception):  # a block still incomplete
        for pkt in PcapNgReader(io.BytesIO(bytes(reader.data))):
            for comment in pkt.comments or ():
                text = comment.decode()
                if text.startswith("dlmsd:"):
                    found.append(json.loads(text[len("dlmsd:"):]))
    return found
