"""Live serial sniffing on pseudo-terminal pairs, no hardware.

The corpus serial capture (Gurux client and server over a pty, HLS-GMAC, dedicated key) is fed
frame by frame at line pacing into a pty, with a frame cut at start-up, line noise and an
adapter unplugged and plugged back; the live output must list the same APDUs, plaintexts and
verdicts as `read` on the capture, and the raw capture must hold every byte fed. A Y-tap on two
pty pairs must give the directions of the capture's direction flags.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import corpus_path
from scapy.utils import RawPcapNgReader

from dissector import cli
from dissector.analysis.pipeline import Dissector
from dissector.framing.serial import SerialDemux
from dissector.live.dissection import LiveDissection
from dissector.live.serial import SerialSettings, SerialSniffer, record_end
from dissector.output.render import Renderer
from dissector.sources.capture import read_capture
from dissector.stages import Pdu, Record
from keys.keystore import keystore_from_flags
from layers.expert import Finding
from layers.iec62056_21 import ModeE, describe_mode_e

SERIAL = "g3_hdlc_serial_pty_gmac"
BYTE_TIME = 10 / 38400  # pacing of the replay: 38400 Bd 8N1
CHUNK = 8  # bytes per write, as a USB adapter delivers them
WAIT = 15.0  # upper bound for any wait on the sniffer
SIGN_ON = [b"/?!\r\n", b"/GRX6\\2GRX-INTEROP-01\r\n", b"\x06262\r\n"]


# -- helpers shared with test_live_tcp and test_extcap --------------------------------------
def scenario_keys(name: str) -> dict[str, Any]:
    return json.loads(corpus_path("interop", name, "keys.json").read_text())


def key_args(keys: dict[str, Any]) -> list[str]:
    """Global keys only: the dedicated key must be learned from the AARQ."""
    return ["--ek", keys["ek"], "--ak", keys["ak"]]


def keystore(keys: dict[str, Any]) -> Any:
    return keystore_from_flags(ek=keys["ek"], ak=keys["ak"])


def corpus_records(name: str, file: str) -> list[Record]:
    return [r for r in read_capture(corpus_path("interop", name, file)) if isinstance(r, Record)]


def apdus(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The APDU records (sign-on messages, records of their own, aside)."""
    return [o for o in objs if "apdu" in o and not o["apdu"].startswith("mode-e-")]


def sign_on_records(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o.get("apdu", "").startswith("mode-e-")]


def wire_of(fields: dict[str, Any]) -> bytes:
    """The bytes of a sign-on message from its JSON fields (hex strings, the ACK as a number)."""
    return b"".join(bytes.fromhex(v) if isinstance(v, str) else bytes([v])
                    for k, v in fields.items() if k != "layer")


def events(objs: list[dict[str, Any]], code: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objs if "event" in o
            and (code is None or any(e["code"] == code for e in o.get("expert", ())))]


def summary(objs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What must agree with `read`: APDU, direction, plaintext, inner APDU, verdict, key."""
    out = []
    for o in apdus(objs):
        sec = o["security"] or {}
        out.append((o["apdu"], o["direction"], o["plaintext"], o["inner"],
                    sec.get("tag_verified"), sec.get("key_kind")))
    return out


def read_json(path: Path | str, keys: dict[str, Any]) -> list[dict[str, Any]]:
    out = io.StringIO()
    assert cli.main(["read", str(path), "--json", *key_args(keys)], out=out) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def pcapng_records(path: Path) -> list[tuple[bytes, Any]]:
    return list(RawPcapNgReader(str(path)))


class Lines(io.TextIOBase):
    """A text sink for the live output, shared between threads, with waits on its lines."""

    def __init__(self) -> None:
        super().__init__()
        self._lines: list[str] = []
        self._part = ""
        self._cond = threading.Condition()

    def write(self, text: str) -> int:
        with self._cond:
            self._part += text
            *done, self._part = self._part.split("\n")
            self._lines.extend(done)
            self._cond.notify_all()
        return len(text)

    def objs(self) -> list[dict[str, Any]]:
        with self._cond:
            return [json.loads(line) for line in self._lines if line]

    def wait(self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: pred([json.loads(line) for line in self._lines if line]), timeout)


class PtyLine:
    """A pseudo-terminal pair behind a fixed path (the adapter's device name): `unplug`
    closes both ends, `plug` puts a new pair behind the same path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.master = self.slave = -1
        self.plug()

    def plug(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tmp = self.path.with_name(self.path.name + ".new")
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, self.path)

    def unplug(self) -> None:
        os.close(self.master)
        os.close(self.slave)
        self.master = self.slave = -1

    def write(self, data: bytes, fed: bytearray | None = None) -> None:
        """Write at line pacing, a few bytes at a time."""
        for i in range(0, len(data), CHUNK):
            chunk = data[i:i + CHUNK]
            os.write(self.master, chunk)
            if fed is not None:
                fed += chunk
            time.sleep(len(chunk) * BYTE_TIME)

    def close(self) -> None:
        if self.master >= 0:
            self.unplug()


@contextlib.contextmanager
def running(source: Any) -> Iterator[Any]:
    """Run a live source in a thread; stop it and check that it ended."""
    source.open()
    thread = threading.Thread(target=source.run, daemon=True)
    thread.start()
    try:
        yield source
    finally:
        source.stop()
        thread.join(WAIT)
        assert not thread.is_alive(), "the live source did not stop"


def sniffer(ports: list[Path], keys: dict[str, Any], lines: Lines, capture: Path | None,
            **kw: Any) -> SerialSniffer:
    dissection = LiveDissection(Dissector(keystore(keys)), lines, Renderer("json"))
    return SerialSniffer([str(p) for p in ports], dissection=dissection,
                         capture_path=str(capture) if capture else None, **kw)


# -- one port: half-duplex bus --------------------------------------------------------------
def test_half_duplex_replay_matches_read_through_noise_cut_frame_and_replug(tmp_path: Path
                                                                              ) -> None:
    keys = scenario_keys(SERIAL)
    frames = corpus_records(SERIAL, "capture.pcap")
    expected_objs = read_json(corpus_path("interop", SERIAL, "capture.pcap"), keys)
    expected = summary(expected_objs)
    half = 24  # frames fed before the adapter is unplugged
    before = sum(1 for o in apdus(expected_objs) if max(o["frames"]) <= half)
    line = PtyLine(tmp_path / "ttyDLMS0")
    lines = Lines()
    capture = tmp_path / "live.pcapng"
    fed = bytearray()
    started = time.monotonic()
    try:
        with running(sniffer([line.path], keys, lines, capture)) as live:
            line.write(frames[2].data[-9:], fed)  # started in the middle of a frame
            time.sleep(0.15)  # the line goes quiet
            line.write(b"\x00\xff\x13", fed)  # line noise
            for n, rec in enumerate(frames[:half]):
                line.write(rec.data, fed)
                if n == 10:
                    line.write(b"\xaa\x55\x00", fed)  # noise between two frames
            assert lines.wait(lambda objs: len(apdus(objs)) >= before)
            line.unplug()
            assert lines.wait(lambda objs: events(objs, "serial.disconnected"))
            line.plug()
            assert lines.wait(lambda objs: events(objs, "serial.reconnected"))
            for rec in frames[half:]:
                line.write(rec.data, fed)
            assert lines.wait(lambda objs: len(apdus(objs)) >= len(expected))
            time.sleep(0.1)
            assert live.capture is not None and live.capture.bytes == len(fed)
    finally:
        line.close()
    assert time.monotonic() - started < 30
    objs = lines.objs()
    assert summary(objs) == expected
    assert any(s[4] for s in expected) and any(s[5] == "dedicated" for s in expected)
    first = apdus(objs)[0]
    assert any(e["code"] == "hdlc.skipped-bytes" for e in first["expert"])
    skipped = [e for o in apdus(objs) for e in o["expert"] if e["code"] == "hdlc.skipped-bytes"]
    assert len(skipped) == 2  # the cut frame and noise at start-up, the noise later
    assert objs[-1].get("end") is None or "expert" in objs[-1]
    # every byte fed is in the capture, in order, as link type 147 records
    records = pcapng_records(capture)
    assert b"".join(data for data, _ in records) == bytes(fed)
    assert {meta.linktype for _, meta in records} == {147}
    # and `read` on that capture says the same
    assert summary(read_json(capture, keys)) == expected


# -- two ports: Y-tap -------------------------------------------------------------------------
def run_y_tap(tmp_path: Path, frames: list[Record], swapped: bool, capture: Path | None
              ) -> tuple[list[dict[str, Any]], dict[str, bytearray]]:
    """Feed each frame into the pty of its direction (client's line, meter's line), with a
    turnaround time between frames; the sniffer gets the ports in that order or `swapped`."""
    keys = scenario_keys(SERIAL)
    client, meter = PtyLine(tmp_path / "ttyA"), PtyLine(tmp_path / "ttyB")
    ptys = {"client->server": client, "server->client": meter}
    fed = {d: bytearray() for d in ptys}
    ports = [meter.path, client.path] if swapped else [client.path, meter.path]
    lines = Lines()
    want = sum(1 for o in read_json(corpus_path("interop", SERIAL, "capture.pcapng"), keys)
               if "apdu" in o and max(o["frames"]) <= len(frames))
    try:
        with running(sniffer(ports, keys, lines, capture)):
            for rec in frames:
                ptys[rec.direction].write(rec.data, fed[rec.direction])
                time.sleep(0.02)
            assert lines.wait(lambda objs: len(apdus(objs)) >= want)
    finally:
        client.close()
        meter.close()
    return lines.objs(), fed


def test_y_tap_two_ports_give_directions(tmp_path: Path) -> None:
    keys = scenario_keys(SERIAL)
    frames = corpus_records(SERIAL, "capture.pcapng")  # direction flags of the capture
    assert {r.direction for r in frames} == {"client->server", "server->client"}
    expected = summary(read_json(corpus_path("interop", SERIAL, "capture.pcapng"), keys))
    capture = tmp_path / "ytap.pcapng"
    objs, fed = run_y_tap(tmp_path, frames, False, capture)
    assert summary(objs) == expected
    assert not events(objs, "serial.ports-swapped")
    # the capture: two interfaces, direction flags (2 outbound = client's line, 1 inbound)
    by_flag: dict[int, bytes] = {}
    for data, meta in pcapng_records(capture):
        by_flag[meta.direction] = by_flag.get(meta.direction, b"") + data
    assert by_flag == {2: bytes(fed["client->server"]), 1: bytes(fed["server->client"])}
    assert summary(read_json(capture, keys)) == expected


def test_y_tap_ports_given_the_other_way_round_are_swapped(tmp_path: Path) -> None:
    keys = scenario_keys(SERIAL)
    frames = corpus_records(SERIAL, "capture.pcapng")[:8]  # SNRM .. first ded-get
    expected = summary(read_json(corpus_path("interop", SERIAL, "capture.pcapng"), keys))[:8]
    objs, _fed = run_y_tap(tmp_path, frames, True, None)
    assert summary(objs) == expected
    assert events(objs, "serial.ports-swapped")


# -- IEC 62056-21 sign-on -------------------------------------------------------------------
def test_sign_on_shown_as_text_and_baud_change_followed(tmp_path: Path) -> None:
    keys = scenario_keys(SERIAL)
    frames = corpus_records(SERIAL, "capture.pcap")
    expected = summary(read_json(corpus_path("interop", SERIAL, "capture.pcap"), keys))
    line = PtyLine(tmp_path / "ttyOptical")
    lines = Lines()
    try:
        with running(sniffer([line.path], keys, lines, None, sign_on=True)) as live:
            assert str(live.readers[0].settings) == "300 7E1"
            for message in SIGN_ON:
                line.write(message)
                time.sleep(0.05)
            assert lines.wait(lambda objs: events(objs, "serial.settings"))
            assert str(live.readers[0].settings) == "19200 8N1"
            for rec in frames:
                line.write(rec.data)
            assert lines.wait(lambda objs: len(apdus(objs)) >= len(expected))
            # DISC answered by UA: the meter is back at the sign-on speed
            assert lines.wait(lambda objs: len(events(objs, "serial.settings")) >= 2)
            assert str(live.readers[0].settings) == "300 7E1"
    finally:
        line.close()
    objs = lines.objs()
    sign_on = sign_on_records(objs)
    assert [(o["apdu"], o["direction"]) for o in sign_on] == [
        ("mode-e-sign-on", "client->server"), ("mode-e-identification", "server->client"),
        ("mode-e-acknowledge", "client->server")]
    assert [wire_of(o["fields"]) for o in sign_on] == SIGN_ON
    info = [describe_mode_e(ModeE(wire_of(o["fields"]))) for o in sign_on]
    assert "19200 Bd" in info[2] and "mode E" in info[1]
    assert summary(objs) == expected


def test_channel_sign_on_then_hdlc_and_sign_on_again() -> None:
    frames = [r.data for r in corpus_records(SERIAL, "capture.pcap")]
    channel = SerialDemux()
    stream = b"".join(SIGN_ON) + b"".join(frames[:3]) + b"/?!\r\n" + frames[3]
    out: list[Any] = []
    for i in range(0, len(stream), 5):  # in small reads
        out += channel.feed(stream[i:i + 5], i // 5 + 1, 0.0)
    out += channel.flush()
    kinds = [ModeE(o.data).kind if isinstance(o, Pdu) and o.transport == "mode-e" else
             o.transport if isinstance(o, Pdu) else type(o).__name__ for o in out]
    assert kinds == ["sign-on", "identification", "acknowledge", "hdlc", "hdlc", "hdlc",
                     "sign-on", "hdlc"]
    assert [o.data for o in out if isinstance(o, Pdu) and o.transport == "hdlc"] == frames[:4]


# -- timing: a silence ends an open frame -----------------------------------------------------
def test_silence_cuts_a_partial_frame_and_the_next_frame_is_found() -> None:
    frames = [r.data for r in corpus_records(SERIAL, "capture.pcap")]
    channel = SerialDemux()
    out = channel.feed(frames[4][:20], 1, 0.0)  # a frame whose sender stopped halfway
    assert out == []
    out = channel.silence()
    assert [type(o) for o in out] == [Finding] and "skipped 20 byte(s)" in out[0].message
    out = channel.feed(frames[5], 2, 0.1)
    assert [o.data for o in out if isinstance(o, Pdu)] == [frames[5]]


def test_silence_ends_a_frame_whose_length_field_is_wrong() -> None:
    from layers.crc import crc16

    bad = bytearray(corpus_records(SERIAL, "capture.pcap")[2].data)  # AARQ: 7E A0 LL 0223 03
    bad[2] += 4  # the length field says 4 bytes more than the frame has
    hcs = crc16(bytes(bad[1:7]))
    bad[7:9] = bytes([hcs & 0xFF, hcs >> 8])
    fcs = crc16(bytes(bad[1:-3]))
    bad[-3:-1] = bytes([fcs & 0xFF, fcs >> 8])
    channel = SerialDemux()
    assert not [o for o in channel.feed(bytes(bad), 1, 0.0) if isinstance(o, Pdu)]
    out = channel.silence()  # the sender went quiet: the frame ends at its last flag
    assert [o.data for o in out if isinstance(o, Pdu)] == [bytes(bad)]
    assert any(isinstance(o, Finding) and o.code == "hdlc.bad-length" for o in out)


def test_records_end_at_frames_lines_and_flags() -> None:
    frames = [r.data for r in corpus_records(SERIAL, "capture.pcap")]
    a, b = frames[0], frames[1]
    assert record_end(a + b) == len(a)
    assert record_end(a[:-1]) == 0
    assert record_end(b"\x00\x13" + a) == 2  # noise before a flag
    assert record_end(b"\x7e\x7e" + a[1:]) == len(a) + 1  # fill flags stay with the frame
    assert record_end(b[1:], after_flag=True) == len(b) - 1  # a flag shared with the last
    assert record_end(SIGN_ON[1] + a) == len(SIGN_ON[1])
    assert record_end(b"/?!") == 0


def test_settings_and_silence() -> None:
    assert str(SerialSettings()) == "9600 8N1"
    assert SerialSettings().silence() == pytest.approx(0.05)
    assert SerialSettings(300, 7, "E", 1).silence() == pytest.approx(10 * 10 / 300)
    assert SerialSettings(gap=0.2).silence() == 0.2


# -- the command line: live JSON lines, Ctrl-C flushes the capture and prints --stats ----------
def test_cli_sniff_serial_live_lines_and_ctrl_c(tmp_path: Path) -> None:
    keys = scenario_keys(SERIAL)
    frames = corpus_records(SERIAL, "capture.pcap")
    expected = summary(read_json(corpus_path("interop", SERIAL, "capture.pcap"), keys))
    line = PtyLine(tmp_path / "ttyCLI")
    capture = tmp_path / "cli.pcapng"
    cmd = [sys.executable, "-m", "dissector", "sniff", "serial", str(line.path), "--json",
           "-w", str(capture), "--stats", *key_args(keys)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out_lines: list[str] = []
    reader = threading.Thread(target=lambda: out_lines.extend(proc.stdout or ()), daemon=True)
    fed = bytearray()
    try:
        banner = proc.stderr.readline() if proc.stderr else ""
        assert "Ctrl-C to stop" in banner, banner
        reader.start()
        half = len(frames) // 2
        for rec in frames[:half]:
            line.write(rec.data, fed)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and not any('"apdu"' in x for x in out_lines):
            time.sleep(0.05)
        assert any('"apdu"' in x for x in out_lines), "no APDU line while the sniffer runs"
        for rec in frames[half:]:
            line.write(rec.data, fed)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(WAIT) == 0
        reader.join(WAIT)
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
        line.close()
    assert "Traceback" not in err and "stopped" in err
    objs = [json.loads(x) for x in out_lines if x.startswith('{"')]
    assert summary(objs) == expected
    assert "== associations ==" in err  # --json: the statistics come on stderr
    assert not [x for x in out_lines if not x.startswith("{\"")]  # stdout: JSON lines only
    assert b"".join(data for data, _ in pcapng_records(capture)) == bytes(fed)


def test_cli_sniff_serial_missing_port_is_one_line(tmp_path: Path) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = cli.main(["sniff", "serial", str(tmp_path / "nope")], out=io.StringIO())
    assert status == 2
    assert "cannot open" in err.getvalue() and "Traceback" not in err.getvalue()
