"""Live TCP on loopback: the corpus capture `b_gmac_authenc_glo` (Gurux client and server,
HLS-GMAC, glo-ciphering) replayed between a client and a fake meter, through the tap (bytes
must arrive unchanged) and under passive capture with Scapy and with tshark; every way must
decode and decipher what `read` does on the capture.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import corpus_path
from test_live_serial import (
    WAIT,
    Lines,
    apdus,
    corpus_records,
    events,
    key_args,
    keystore,
    pcapng_records,
    read_json,
    running,
    scenario_keys,
    summary,
)

from dissector.analysis.pipeline import Dissector
from dissector.live.dissection import LiveDissection
from dissector.live.passive import PassiveSniffer, tshark_path
from dissector.live.tap import TcpTap
from dissector.output.render import Renderer

SCENARIO = "b_gmac_authenc_glo"
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

Messages = list[tuple[str, bytes]]


def messages() -> Messages:
    """The conversation: (direction, bytes) in order, from the corpus capture's TCP streams."""
    return [(r.direction, r.data) for r in corpus_records(SCENARIO, "capture.pcap")]


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeMeter:
    """Plays the meter's side of the conversation for `connections` connections: checks that
    what the client sent arrives unchanged and sends the meter's bytes. After `drop_after`
    messages of the first connection, it closes that connection instead of going on."""

    def __init__(self, msgs: Messages, port: int = 0, drop_after: int | None = None,
                 connections: int = 1) -> None:
        self.msgs = msgs
        self.drop_after = drop_after
        self.connections = connections
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.settimeout(WAIT)
        self.address = self.sock.getsockname()[:2]
        self.problems: list[str] = []
        self.served = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with self.sock:
            while self.served < self.connections:
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                with conn:
                    conn.settimeout(WAIT)
                    self._play(conn, self.drop_after if not self.served else None)
                self.served += 1

    def _play(self, conn: socket.socket, drop_after: int | None) -> None:
        for n, (direction, data) in enumerate(self.msgs):
            if n == drop_after:
                return
            try:
                if direction == "client->server":
                    if recv_exact(conn, len(data)) != data:
                        self.problems.append(f"message {n} changed on the way to the meter")
                else:
                    conn.sendall(data)
            except (OSError, EOFError) as exc:
                self.problems.append(f"message {n}: {exc}")
                return

    def close(self) -> None:
        self.sock.close()


def play_client(address: tuple[str, int], msgs: Messages, stop_at: int | None = None) -> None:
    """The client's side: send its bytes, check the meter's arrive unchanged."""
    with socket.create_connection(address, timeout=WAIT) as sock:
        for n, (direction, data) in enumerate(msgs[:stop_at]):
            if direction == "client->server":
                sock.sendall(data)
            else:
                assert recv_exact(sock, len(data)) == data, f"message {n} changed"


def live_dissection(lines: Lines) -> LiveDissection:
    return LiveDissection(Dissector(keystore(scenario_keys(SCENARIO))), lines, Renderer("json"))


def expected() -> list[tuple]:
    return summary(read_json(corpus_path("interop", SCENARIO, "capture.pcap"),
                             scenario_keys(SCENARIO)))


# -- the tap ----------------------------------------------------------------------------------
def test_tap_relays_unchanged_and_decodes_live(tmp_path: Path) -> None:
    msgs = messages()
    want = expected()
    assert want and all(s[4] for s in want if s[4] is not None)
    meter = FakeMeter(msgs)
    lines = Lines()
    capture = tmp_path / "tap.pcapng"
    tap = TcpTap(("127.0.0.1", 0), meter.address, dissection=live_dissection(lines),
                 capture_path=str(capture))
    try:
        with running(tap):
            assert tap.address is not None
            play_client(tap.address, msgs)
            assert lines.wait(lambda objs: len(apdus(objs)) >= len(want))
            meter.thread.join(WAIT)
    finally:
        meter.close()
    assert meter.problems == [] and meter.served == 1
    objs = lines.objs()
    assert summary(objs) == want
    link = apdus(objs)[0]["link"]
    assert link.startswith("tcp 127.0.0.1:") and link.endswith(f"-127.0.0.1:{meter.address[1]}")
    # the capture reads back as the same conversation, frame numbers and all
    keys = scenario_keys(SCENARIO)
    again = read_json(capture, keys)
    assert [(o["frames"], o["link"], o["apdu"], o["plaintext"]) for o in apdus(again)] == \
        [(o["frames"], o["link"], o["apdu"], o["plaintext"]) for o in apdus(objs)]
    assert {meta.linktype for _, meta in pcapng_records(capture)} == {101}


def test_tap_retries_an_unreachable_meter_and_reports_a_drop() -> None:
    msgs = messages()
    port = free_port()
    lines = Lines()
    tap = TcpTap(("127.0.0.1", 0), ("127.0.0.1", port), dissection=live_dissection(lines),
                 connect_timeout=WAIT)
    meters: list[FakeMeter] = []
    try:
        with running(tap):
            assert tap.address is not None
            late = threading.Timer(0.6, lambda: meters.append(FakeMeter(msgs, port, 4, 2)))
            late.start()  # the meter comes up while the tap is retrying
            with socket.create_connection(tap.address, timeout=WAIT) as sock:
                for direction, data in msgs[:4]:  # AARQ/AARE, HLS pass 3/4
                    if direction == "client->server":
                        sock.sendall(data)
                    else:
                        assert recv_exact(sock, len(data)) == data
                sock.sendall(msgs[4][1])  # the meter has dropped the connection by now
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(100) == b""  # the client sees the close
            late.join()
            # a FIN, or a RST when the request reached the meter before its close
            assert lines.wait(lambda objs: events(objs, "tap.server-closed")
                              or events(objs, "tap.server-reset"))
            play_client(tap.address, msgs, stop_at=4)  # the tap still serves
            assert lines.wait(lambda objs: len(apdus(objs)) >= 8)
    finally:
        for meter in meters:
            meter.close()
    objs = lines.objs()
    assert events(objs, "tap.forward-retry") and events(objs, "tap.forward-reconnected")
    assert [o["apdu"] for o in apdus(objs)][:4] == [s[0] for s in expected()[:4]]


def test_tap_gives_up_on_a_meter_that_stays_away() -> None:
    lines = Lines()
    tap = TcpTap(("127.0.0.1", 0), ("127.0.0.1", free_port()), dissection=live_dissection(lines),
                 connect_timeout=0.5)
    with running(tap):
        assert tap.address is not None
        with socket.create_connection(tap.address, timeout=WAIT) as sock:
            sock.settimeout(WAIT)
            assert sock.recv(10) == b""  # closed once the tap gives up
        assert lines.wait(lambda objs: events(objs, "tap.forward-failed"))


def run_cli_tap(extra: list[str], before_stop: Callable[[], None] = lambda: None
                ) -> tuple[FakeMeter, subprocess.Popen, str, str]:
    """`dlms-dissect sniff tcp --listen` between a client and a fake meter playing the
    scenario, stopped with Ctrl-C once the meter is done: (meter, process, stdout, stderr)."""
    msgs = messages()
    meter = FakeMeter(msgs)
    cmd = [sys.executable, "-m", "dissector", "sniff", "tcp", "--listen", "127.0.0.1:0",
           "--forward", f"127.0.0.1:{meter.address[1]}", *extra,
           *key_args(scenario_keys(SCENARIO))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = proc.stderr.readline() if proc.stderr else ""
        assert "listening on 127.0.0.1:" in banner, banner
        port = int(banner.split("listening on 127.0.0.1:")[1].split(",")[0])
        play_client(("127.0.0.1", port), msgs)
        meter.thread.join(WAIT)
        time.sleep(0.5)
        before_stop()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
        meter.close()
    return meter, proc, out, err


def test_cli_tap_with_ctrl_c(tmp_path: Path) -> None:
    capture = tmp_path / "cli-tap.pcapng"
    meter, proc, out, err = run_cli_tap(["-w", str(capture), "--stats"])
    assert proc.returncode == 0, err
    assert meter.problems == []
    assert "Traceback" not in err
    shown = [line for line in out.splitlines() if re.match(r" *\d+ +\d+\.\d+ +\S+->", line)]
    assert len(shown) == len(expected())
    assert "tag OK" in out and "== associations ==" in out
    assert summary(read_json(capture, scenario_keys(SCENARIO))) == expected()


# -- passive capture on the loopback interface ----------------------------------------------
def need(condition: bool, what: str) -> None:
    """Skip where a user's machine lacks `what`; in CI (env CI set) that is a failure."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI (.ci/run must provide it)")
    pytest.skip(f"{what} is missing (CI provides it)")


def passive_replay(engine: str, tmp_path: Path) -> tuple[list[dict], Path, int]:
    msgs = messages()
    port = free_port()
    lines = Lines()
    capture = tmp_path / f"passive-{engine}.pcapng"
    sniffer = PassiveSniffer("lo", f"tcp port {port}", engine=engine, ports={port: None},
                             dissection=live_dissection(lines), capture_path=str(capture))
    with running(sniffer):
        assert sniffer.capture is not None
        deadline = time.monotonic() + 60  # tshark may take a while to start on a cold cache
        while sniffer.capture.count == 0 and time.monotonic() < deadline:
            with pytest.raises(OSError):  # nobody listens yet: SYN, RST, both captured
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            time.sleep(0.2)
        assert sniffer.capture.count > 0, f"{engine} captured nothing"
        meter = FakeMeter(msgs, port)
        try:
            play_client(("127.0.0.1", port), msgs)
            meter.thread.join(WAIT)
            want = len(expected())
            assert lines.wait(lambda objs: len(apdus(objs)) >= want, 30)
        finally:
            meter.close()
        assert meter.problems == []
    return lines.objs(), capture, port


def test_passive_capture_with_scapy(tmp_path: Path) -> None:
    need(os.geteuid() == 0, "root (capturing on lo)")
    objs, capture, _port = passive_replay("scapy", tmp_path)
    assert summary(objs) == expected()
    assert {meta.linktype for _, meta in pcapng_records(capture)} == {1}
    assert summary(read_json(capture, scenario_keys(SCENARIO))) == expected()


def dumpcaps() -> set[str]:
    found = subprocess.run(["pgrep", "dumpcap"], capture_output=True, text=True).stdout
    return set(found.split())


def test_passive_capture_with_tshark(tmp_path: Path) -> None:
    need(tshark_path() is not None, "tshark (apt-get install -y tshark)")
    need(os.geteuid() == 0, "root (capturing on lo)")
    before = dumpcaps()
    objs, capture, _port = passive_replay("tshark", tmp_path)
    assert summary(objs) == expected()
    assert summary(read_json(capture, scenario_keys(SCENARIO))) == expected()
    deadline = time.monotonic() + 5
    while dumpcaps() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not dumpcaps() - before, "a dumpcap process outlived the capture"
