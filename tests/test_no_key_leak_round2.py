"""Issue #14 item 1: no key in ANY output of `read`, the keys learned from the traffic included.

What `test_no_key_leak.py` lacks: the dedicated keys the AARQs carry inside their ciphered
initiate-requests (learned, not given: the seed case's from its generator, the head-end
capture's from its `sessions.tsv`), the `-w` export file's bytes (raw key bytes and hex),
`--jobs 2`, and a generated head-end capture with many meters and associations. Every run
must really decipher, so that the keys were in use.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT
from test_no_key_leak import assert_no_leak

from dissector.cli.main import main

SEED = ROOT / "pcaps" / "seed-case"
KEY_FIELDS = ("ek", "ak", "bek", "kek", "dedicated", "hls_secret")


def keystore_secrets(path: Path) -> set[bytes]:
    out = set()
    for meter in tomllib.loads(path.read_text())["meter"]:
        for name in KEY_FIELDS:
            value = meter.get(name)
            if value:
                out.add(value[5:].encode() if value.startswith("text:") else
                        bytes.fromhex(value))
    return out


def seed_secrets() -> set[bytes]:
    sys.path.insert(0, str(ROOT / "pcaps"))
    try:
        import make_seed_case  # the generator of the capture: the dedicated key it sent
    finally:
        sys.path.remove(str(ROOT / "pcaps"))
    return keystore_secrets(SEED.with_suffix(".keys.toml")) | {make_seed_case.DK}


@pytest.fixture(scope="module")
def headend(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], set[bytes]]:
    """A small head-end capture (HDLC on 4061 and wrapper), its keystore and every key in it,
    the dedicated keys of its associations included."""
    out = tmp_path_factory.mktemp("headend")
    subprocess.run([sys.executable, str(ROOT / "bench" / "generate.py"), "--sizes", "2000",
                    "--out", str(out)], check=True, capture_output=True, timeout=300)
    name = out / "headend-2k"
    secrets = keystore_secrets(name.with_suffix(".keys.toml"))
    rows = name.with_suffix(".sessions.tsv").read_text().splitlines()
    header = rows[0].lstrip("#").split("\t")
    learned = 0
    for row in rows[1:]:
        cells = dict(zip(header, row.split("\t"), strict=False))
        for col in ("ek", "ak", "dedicated"):
            if cells.get(col, "-") not in ("", "-"):
                secrets.add(bytes.fromhex(cells[col]))
                learned += col == "dedicated"
    assert learned > 10, "the capture carries dedicated keys in its AARQs"
    argv = [str(name.with_suffix(".pcap")), "--keys", str(name.with_suffix(".keys.toml")),
            "--port", "4061:hdlc"]
    return argv, secrets


MODES = [[], ["-V"], ["--json"], ["--stats"], ["--jobs", "2"], ["--jobs", "2", "-V"],
         ["--jobs", "2", "--json", "--stats"]]


def run_read(argv: list[str], mode: list[str], out_file: Path,
             capfd: pytest.CaptureFixture[str]) -> tuple[str, bytes]:
    status = main(["read", *argv, *mode, "-w", str(out_file)])
    out, err = capfd.readouterr()
    assert status == 0, err[-2000:]
    assert "tag OK" in out or "tag_verified=True" in out or '"tag_verified": true' in out
    return out + err, out_file.read_bytes()


def assert_export_clean(data: bytes, secrets: set[bytes], what: str) -> None:
    low = data.lower()
    for secret in secrets:
        assert secret not in data, f"{what}: key bytes in the export"
        assert secret.hex().encode() not in low, f"{what}: key hex in the export"


@pytest.mark.parametrize("mode", MODES, ids=lambda m: " ".join(m) or "summary")
def test_seed_case_no_key_anywhere(mode: list[str], tmp_path: Path, monkeypatch:
                                   pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("DLMS_KEYS", raising=False)
    secrets = seed_secrets()
    argv = [str(SEED.with_suffix(".pcap")), "--keys", str(SEED.with_suffix(".keys.toml"))]
    text, export = run_read(argv, mode, tmp_path / "out.pcapng", capfd)
    assert "output.key-withheld" in text  # the learned key was there to withhold
    assert_no_leak(text, sorted(secrets), f"seed read {mode}")
    assert_export_clean(export, secrets, f"seed read {mode} -w")


@pytest.mark.parametrize("mode", MODES[:4] + MODES[-1:], ids=lambda m: " ".join(m) or "summary")
def test_headend_no_key_anywhere(mode: list[str], headend: tuple[list[str], set[bytes]],
                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("DLMS_KEYS", raising=False)
    argv, secrets = headend
    text, export = run_read(argv, mode, tmp_path / "out.pcapng", capfd)
    assert "output.key-withheld" in text
    squeezed = "".join(text.split()).lower()
    for secret in secrets:  # hex in either case, as typed or split by spaces; raw bytes
        assert secret.hex() not in squeezed, f"head-end read {mode}: key hex in the output"
        assert secret.decode("latin-1") not in text, f"head-end read {mode}: key bytes"
    assert_export_clean(export, secrets, f"head-end read {mode} -w")
