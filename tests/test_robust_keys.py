"""Key safety beyond tests/test_no_key_leak.py: what the program writes to files (-w), the
parallel path, damaged and hostile input dissected with known keys (every output format and
stderr), keys mistyped on the command line, and the warning for a keystore readable by others.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, corpus_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_no_key_leak import assert_no_leak, interop_case, needles, seed_case
from test_robust_layers import mutated, seeds

from dissector.cli.main import main

sys.path.insert(0, str(ROOT / "fuzz"))
import harness


@pytest.fixture(autouse=True)
def _no_default_keystore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DLMS_KEYS", raising=False)


def assert_no_key_bytes(data: bytes, secrets: list[bytes], what: str) -> None:
    """Binary output: neither the key bytes nor their hex in any case or spacing."""
    for secret in secrets:
        assert secret not in data, f"{what}: key bytes written"
        for needle in needles(secret)[:-1]:  # (the last one is the bytes as Latin-1 text)
            assert needle.encode() not in data, f"{what}: key hex written"


@pytest.mark.parametrize("case_name", ["seed", "interop"])
def test_written_capture_holds_no_keys(case_name: str, tmp_path: Path,
                                       capfd: pytest.CaptureFixture[str]) -> None:
    case = {"seed": seed_case, "interop": interop_case}[case_name]()
    target = tmp_path / "out.pcapng"
    status = main(["read", str(case.capture), "-w", str(target), "--stats",
                   "--keys", str(case.keystore_file(tmp_path))])
    out, err = capfd.readouterr()
    assert status == 0, err
    assert "tag OK" in out  # the keys were in use
    written = target.read_bytes()
    assert len(written) > 200
    assert_no_key_bytes(written, case.secrets(), f"{case_name} -w")
    assert_no_leak(out + err, case.secrets(), f"{case_name} read -w")


def test_parallel_read_shows_no_keys(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    case = interop_case()
    for mode in ([], ["-V"], ["--json"]):
        status = main(["read", str(case.capture), "--jobs", "2", *mode, *case.flags()])
        out, err = capfd.readouterr()
        assert status == 0, err
        assert_no_leak(out + err, case.secrets(), f"read --jobs 2 {mode}")


KEYED = settings(max_examples=30, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@KEYED
@given(lines=st.lists(st.one_of(mutated(st.deferred(lambda: st.sampled_from(
    seeds()["apdu"] + seeds()["hdlc"] + seeds()["wrapper"]))), st.binary(max_size=100)),
    min_size=1, max_size=6))
def test_hostile_input_with_known_keys_shows_no_keys(lines: list[bytes]) -> None:
    """Every published key of the corpus loaded, input damaged at random: no output format
    shows a key, whatever the dissector found or failed to decipher."""
    secrets = harness.key_secrets()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        texts = harness.run_decode(lines, keyed=True)
    text = harness.output_text(texts) + err.getvalue()
    needles_hex = [s.hex() for s in secrets] + [s.hex().upper() for s in secrets]
    for needle in needles_hex:
        assert needle not in text


def test_damaged_capture_with_key_flags_shows_no_keys(tmp_path: Path) -> None:
    """A truncated capture read in its own process with keys given as flags: stdout, stderr
    (warnings of the capture reader included) hold no key."""
    case = interop_case()
    data = case.capture.read_bytes()
    damaged = tmp_path / "damaged.pcap"
    damaged.write_bytes(data[: len(data) * 2 // 3] + b"\xff" * 7)
    env = {k: v for k, v in os.environ.items() if k not in ("DLMS_KEYS", "DLMS_DEBUG")}
    proc = subprocess.run([sys.executable, "-m", "dissector", "read", str(damaged), "-V",
                           *case.flags()], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_no_leak(proc.stdout + proc.stderr, case.secrets(), "damaged capture")


@pytest.mark.parametrize("argv", [
    ["read", "CAPTURE", "--gak", "KEY"],
    ["read", "CAPTURE", "--ek", "KEY", "KEY"],
    ["--ek", "KEY", "read", "CAPTURE"],
])
def test_mistyped_key_arguments_are_not_echoed(argv: list[str]) -> None:
    key = "5EED0CA5E0000000000000000000EC01"
    argv = [key if a == "KEY" else str(ROOT / "pcaps" / "seed-case.pcap") if a == "CAPTURE"
            else a for a in argv]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit):
        main(argv, io.StringIO())
    assert err.getvalue() and key not in err.getvalue() and key.lower() not in err.getvalue()


@pytest.mark.parametrize("command", ["read", "decode"])
def test_keystore_readable_by_others_is_warned_about(command: str, tmp_path: Path,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.toml"
    path.write_text((ROOT / "pcaps" / "seed-case.keys.toml").read_text())
    path.chmod(0o644)
    target = [str(ROOT / "pcaps" / "seed-case.pcap")] if command == "read" else \
        ["C001C100080000010000FF0200"]
    status = main([command, *target, "--keys", str(path)])
    out, err = capfd.readouterr()
    assert status == 0
    assert "readable by group/others" in err and "chmod 600" in err
    assert_no_leak(out + err, seed_case().secrets(), "warning")


def test_keys_check_warns_about_a_keystore_readable_by_others(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.toml"
    path.write_text((ROOT / "pcaps" / "seed-case.keys.toml").read_text())
    path.chmod(0o644)
    status = main(["keys", "check", str(path)])
    out, err = capfd.readouterr()
    assert status == 0 and "readable by group/others" in out + err
    assert_no_leak(out + err, seed_case().secrets(), "keys check")


def test_corpus_is_present() -> None:
    corpus_path("manifest.json")
