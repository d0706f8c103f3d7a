"""Bad input to the commands: a clear one-line error on stderr and a non-zero exit status, never a
traceback. Missing and unreadable files, files that are not captures, an unknown link type, an
invalid keystore, bad options, a serial port that does not exist.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from dissector.cli.main import main

SEED_PCAP = ROOT / "pcaps" / "seed-case.pcap"
SEED_KEYS = ROOT / "pcaps" / "seed-case.keys.toml"


def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The command in this process: status, stdout, stderr (argparse errors exit 2)."""
    out, err = io.StringIO(), io.StringIO()
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stderr(err):
            try:
                status = main(argv, out)
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 2
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return status, out.getvalue(), err.getvalue()


def assert_one_line_error(status: int, err: str, *words: str) -> None:
    assert status not in (0, None), err
    assert status != 3, f"internal error instead of a clear message: {err}"
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("dlms-dissect: "), err
    for word in words:
        assert word in lines[0], (word, err)


@pytest.fixture(autouse=True)
def _no_default_keystore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DLMS_KEYS", raising=False)


def pcap_header(linktype: int) -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)


NOT_CAPTURES = {
    "text.pcap": (b"this is not a capture\n", "not a pcap"),
    "empty.pcap": (b"", "empty"),
    "short.pcap": (b"\xd4\xc3\xb2\xa1\x02\x00", "not a readable"),
    "bad.pcapng": (b"\x0a\x0d\x0d\x0a" + b"\x00" * 40, "not a readable"),
    "bad.pcap.gz": (b"\x1f\x8b\x08\x00garbage", "not a readable"),
    "image.png": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "not a pcap"),
}


@pytest.mark.parametrize("name", sorted(NOT_CAPTURES))
def test_read_a_file_that_is_not_a_capture(name: str, tmp_path: Path) -> None:
    data, words = NOT_CAPTURES[name]
    path = tmp_path / name
    path.write_bytes(data)
    status, _, err = run(["read", str(path)])
    assert_one_line_error(status, err, name, words)


def test_read_a_missing_file(tmp_path: Path) -> None:
    status, _, err = run(["read", str(tmp_path / "nope.pcap")])
    assert_one_line_error(status, err, "nope.pcap", "No such file")


def test_read_an_unreadable_file(tmp_path: Path) -> None:
    status, _, err = run(["read", str(tmp_path)])  # a directory cannot be read as a file
    assert_one_line_error(status, err, str(tmp_path), "directory")
    locked = tmp_path / "locked.pcap"
    locked.write_bytes(SEED_PCAP.read_bytes())
    locked.chmod(0)
    if os.access(locked, os.R_OK):
        return  # running as root: the mode does not stop reading
    status, _, err = run(["read", str(locked)])
    assert_one_line_error(status, err, "locked.pcap", "ermission")


def test_read_an_unknown_link_type(tmp_path: Path) -> None:
    path = tmp_path / "usb.pcap"
    path.write_bytes(pcap_header(189) + struct.pack("<IIII", 0, 0, 4, 4) + b"abcd")
    status, _, err = run(["read", str(path)])
    assert_one_line_error(status, err, "usb.pcap", "link type 189")


BAD_KEYSTORES = {
    "syntax": ('[[meter]\nname = "m"\n', "TOML"),
    "bad hex": ('[[meter]]\nname = "m"\nek = "00zz"\n', "ek"),
    "short key": ('[[meter]]\nname = "m"\nek = "0011"\n', "ek"),
    "unknown field": ('[[meter]]\nname = "m"\nguek = "00112233445566778899AABBCCDDEEFF"\n',
                      "guek"),
    "binary": ("\x00\x01\x02\xff", ""),
}


@pytest.mark.parametrize("problem", sorted(BAD_KEYSTORES))
@pytest.mark.parametrize("command", ["read", "decode"])
def test_invalid_keystore(problem: str, command: str, tmp_path: Path) -> None:
    text, word = BAD_KEYSTORES[problem]
    path = tmp_path / "keys.toml"
    path.write_text(text, errors="surrogateescape")
    path.chmod(0o600)
    target = [str(SEED_PCAP)] if command == "read" else ["C001C100080000010000FF0200"]
    status, _, err = run([command, *target, "--keys", str(path)])
    assert_one_line_error(status, err, "keys.toml", word)
    status, _, err = run([command, *target], env={"DLMS_KEYS": str(path)})
    assert_one_line_error(status, err, "keys.toml")


def test_missing_or_unreadable_keystore(tmp_path: Path) -> None:
    for path in (tmp_path / "none.toml", tmp_path):
        status, _, err = run(["read", str(SEED_PCAP), "--keys", str(path)])
        assert_one_line_error(status, err, str(path))
    status, out, _ = run(["keys", "check", str(tmp_path / "none.toml")])
    assert status == 1 and "none.toml" in out


@pytest.mark.parametrize("flag", ["--ek", "--ak", "--dk", "--client-title", "--hls-secret"])
def test_bad_key_flag(flag: str) -> None:
    status, _, err = run(["decode", flag, "00zz", "C001C100080000010000FF0200"])
    assert_one_line_error(status, err, flag)


BAD_OPTIONS = {
    "filter": (["-Y", "((("], "filter"),
    "filter field": (["-Y", 'no.such.field == "x" and'], ""),
    "port range": (["--port", "99999:hdlc"], "port"),
    "port transport": (["--port", "4061:prime"], "port"),
    "port number": (["--port", "x:hdlc"], "port"),
    "write dir": (["-w", "/nonexistent-dir/x.pcapng"], "nonexistent-dir"),
}


@pytest.mark.parametrize("problem", sorted(BAD_OPTIONS))
def test_bad_read_options(problem: str) -> None:
    extra, word = BAD_OPTIONS[problem]
    status, _, err = run(["read", str(SEED_PCAP), *extra])
    assert_one_line_error(status, err, word)


@pytest.mark.parametrize("text", ["7EA0ZZ", "0x7", "C0 01 C", "héllo"])
def test_decode_text_that_is_not_hex(text: str) -> None:
    status, _, err = run(["decode", text])
    assert_one_line_error(status, err)


def test_a_serial_port_that_does_not_exist(tmp_path: Path) -> None:
    status, _, err = run(["sniff", "serial", str(tmp_path / "ttyNOPE")])
    assert_one_line_error(status, err, "ttyNOPE")


def test_errors_in_a_separate_process_have_no_traceback(tmp_path: Path) -> None:
    """The installed entry point on real stderr: the same one line, status 2."""
    env = {k: v for k, v in os.environ.items() if k not in ("DLMS_KEYS", "DLMS_DEBUG")}
    (tmp_path / "text.pcap").write_text("not a capture")
    for argv in (["read", str(tmp_path / "nope.pcap")], ["read", str(tmp_path / "text.pcap")],
                 ["read", str(SEED_PCAP), "--keys", str(tmp_path / "none.toml")]):
        proc = subprocess.run([sys.executable, "-m", "dissector", *argv],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
        assert_one_line_error(proc.returncode, proc.stderr)
        assert proc.stdout == ""
