"""The TCP tap under a flood (issue: unbounded backlog): a connection that sends faster than
dissection goes is bounded, the other connections' APDUs still come out, the capture file keeps
every byte, and SIGTERM, `--duration` and a second Ctrl-C end the run with the stop line and
the statistics. Real sockets on loopback, the real command in a process of its own."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from scapy.layers.inet import TCP
from scapy.utils import rdpcap
from test_live_serial import scenario_keys
from test_live_tcp import SCENARIO, free_port, messages

from dissector.analysis.pipeline import Dissector
from dissector.live.dissection import LiveDissection
from dissector.live.tap import TcpTap
from dissector.output.render import Renderer
from keys.keystore import keystore_from_flags
from layers.hdlc import HDLC, LLC
from layers.hdlc_bytes import encode_address

ROOT = Path(__file__).resolve().parent.parent
# I-frames carrying a get-request (notes §5.4's get-request of the clock), as a client sends
# them: each one is dissected, which is what makes the flood cost dissection time.
FRAME = bytes(HDLC(destination=encode_address(1, 17), source=encode_address(16), control=0x10,
                   information=LLC() / bytes.fromhex("C0010000080000010000FF0200")))


class SinkMeter:
    """A meter that accepts connections and reads (and drops) what it gets."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()[:2]
        self.received = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                self.received += len(data)

    def close(self) -> None:
        self.sock.close()


class SlowDissection(LiveDissection):
    """Dissection that falls behind: a pause per item, as a busy machine would make it."""

    def process(self, item):  # type: ignore[no-untyped-def]
        time.sleep(0.002)
        return super().process(item)


def _flood(address: tuple[str, int], total: int) -> int:
    sent = 0
    with socket.create_connection(address) as sock:
        while sent < total:
            chunk = FRAME * 200
            sock.sendall(chunk)
            sent += len(chunk)
    return sent


def _client_requests(address: tuple[str, int]) -> int:
    """The corpus client's requests, sent without waiting for answers (the meter is a sink)."""
    sent = 0
    with socket.create_connection(address) as sock:
        for direction, data in messages():
            if direction == "client->server":
                sock.sendall(data)
                sent += 1
                time.sleep(0.01)
    return sent


def test_a_flood_is_bounded_and_the_other_connection_is_dissected(tmp_path: Path) -> None:
    keys = scenario_keys(SCENARIO)
    meter = SinkMeter()
    out = io.StringIO()
    cap = tmp_path / "tap.pcapng"
    dis = SlowDissection(Dissector(keystore_from_flags(ek=keys["ek"], ak=keys["ak"])), out,
                         Renderer("json"))
    tap = TcpTap(("127.0.0.1", 0), meter.address, dissection=dis, capture_path=str(cap),
                 max_backlog=32 * 1024)
    address = tap.open()
    runner = threading.Thread(target=tap.run, daemon=True)
    runner.start()
    try:
        flood = _flood(address, 3 * 1024 * 1024)
        requests = _client_requests(address)
        time.sleep(1.0)
    finally:
        tap.stop()
        runner.join(timeout=30)
        meter.close()
    assert not runner.is_alive(), "the tap did not stop"
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    codes = [f["code"] for r in rows for f in r.get("expert", [])]
    assert "tap.dissection-behind" in codes
    # the other connection: every request the corpus client sent came out, deciphered
    others = [r for r in rows if r.get("apdu") and r["direction"] == "client->server"
              and not r["apdu"].startswith("hdlc")]
    assert len(others) >= requests, (len(others), requests)
    # the capture file holds every byte of both clients (nothing skipped there)
    client_bytes = sum(len(bytes(p[TCP].payload)) for p in rdpcap(str(cap))
                       if TCP in p and p[TCP].dport == meter.address[1])
    assert client_bytes == flood + sum(len(d) for k, d in messages() if k == "client->server")


@contextlib.contextmanager
def _command(*args: str) -> Iterator[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen([sys.executable, "-m", "dissector", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                     timeout=0.2):
            return
        time.sleep(0.1)
    raise AssertionError("the tap never listened")


def _flooding(port: int, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)) as s:
            while not stop.is_set():
                s.sendall(FRAME * 500)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _ends_in_time(proc: subprocess.Popen[str], within: float) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running {within} s after the stop: {err[-500:]}") from None
    return out, err


def test_sigterm_and_a_second_ctrl_c_end_a_flooded_tap_with_the_stop_line(
        tmp_path: Path) -> None:
    meter = SinkMeter()
    try:
        for signals in ([signal.SIGTERM], [signal.SIGINT, signal.SIGINT]):
            port = free_port()
            with _command("sniff", "tcp", "--listen", f"127.0.0.1:{port}", "--forward",
                          f"127.0.0.1:{meter.address[1]}", "--json", "--stats",
                          "-w", str(tmp_path / "out.pcapng")) as proc:
                _wait_listening(port)
                stop = threading.Event()
                flooder = _flooding(port, stop)
                time.sleep(2.0)  # a backlog builds up
                for sig in signals:
                    proc.send_signal(sig)
                    time.sleep(0.2)
                _out, err = _ends_in_time(proc, 15)
                stop.set()
                flooder.join(timeout=5)
            assert proc.returncode == 0, err[-500:]
            assert "dlms-dissect: stopped;" in err
            assert "== associations ==" in err  # --json: statistics on stderr
    finally:
        meter.close()


def test_duration_ends_a_flooded_tap(tmp_path: Path) -> None:
    meter = SinkMeter()
    port = free_port()
    try:
        with _command("sniff", "tcp", "--listen", f"127.0.0.1:{port}", "--forward",
                      f"127.0.0.1:{meter.address[1]}", "--duration", "3", "--stats") as proc:
            _wait_listening(port)
            stop = threading.Event()
            flooder = _flooding(port, stop)
            started = time.monotonic()
            out, err = _ends_in_time(proc, 20)
            stop.set()
            flooder.join(timeout=5)
        assert time.monotonic() - started < 15
        assert proc.returncode == 0 and "dlms-dissect: stopped;" in err
        assert "== associations ==" in out
    finally:
        meter.close()
