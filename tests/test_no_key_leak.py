"""Key bytes never appear in any output (DESIGN.md "Keys"): `decode` and `read` in summary, `-V`
and `--json` modes, keys given by flags and by a keystore file, over the seed-case rebuild
(pcaps/seed-case.pcap) and a Gurux interop capture (HDLC over serial, HLS-GMAC, dedicated key);
and `keys check` and the error messages about bad keys, which must not quote the value either.

Every run must really decipher (tag OK) so that the keys were in use. The dedicated key that an
AARQ carries inside its ciphered initiate-request is traffic content, learned and not given, so
it is not one of the keys scanned for here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CORPUS, ROOT, corpus_path
from scapy.utils import RawPcapReader

from dissector.cli.main import main

SEED_PCAP = ROOT / "pcaps" / "seed-case.pcap"
SEED_KEYS = ROOT / "pcaps" / "seed-case.keys.toml"
INTEROP = CORPUS / "interop" / "g3_hdlc_serial_pty_gmac"


@dataclass
class Case:
    """A capture with the keys that decipher it."""

    capture: Path
    ek: str
    ak: str
    hls_secret: str | None = None
    client_title: str | None = None
    server_title: str | None = None

    def secrets(self) -> list[bytes]:
        out = [bytes.fromhex(self.ek), bytes.fromhex(self.ak)]
        if self.hls_secret:
            out.append(self.hls_secret[5:].encode() if self.hls_secret.startswith("text:")
                       else bytes.fromhex(self.hls_secret))
        return out

    def flags(self) -> list[str]:
        argv = ["--ek", self.ek, "--ak", self.ak]
        for flag, value in (("--hls-secret", self.hls_secret),
                            ("--client-title", self.client_title),
                            ("--server-title", self.server_title)):
            if value:
                argv += [flag, value]
        return argv

    def keystore_file(self, where: Path) -> Path:
        lines = ["[[meter]]", 'name = "leak-test-meter"', f'ek = "{self.ek}"',
                 f'ak = "{self.ak}"']
        for field, value in (("hls_secret", self.hls_secret),
                             ("client_system_title", self.client_title),
                             ("system_title", self.server_title)):
            if value:
                lines.append(f'{field} = "{value}"')
        path = where / "keys.toml"
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path

    def frames_hex(self) -> list[str]:
        return [data.hex() for data, _ in RawPcapReader(str(self.capture))]


def seed_case() -> Case:
    assert SEED_PCAP.is_file() and SEED_KEYS.is_file(), "pcaps/ ships the seed case"
    meter = tomllib.loads(SEED_KEYS.read_text())["meter"][0]
    return Case(SEED_PCAP, meter["ek"], meter["ak"], meter.get("hls_secret"),
                meter.get("client_system_title"), meter.get("system_title"))


def interop_case() -> Case:
    keys = json.loads(corpus_path("interop", INTEROP.name, "keys.json").read_text())
    secret = keys.get("hls_secret")
    return Case(INTEROP / "capture.pcap", keys["ek"], keys["ak"],
                f"text:{secret}" if secret else None,
                keys.get("client_system_title"), keys.get("server_system_title"))


CASES = {"seed": seed_case, "interop": interop_case}


def needles(secret: bytes) -> list[str]:
    """The ways key bytes could show in text: hex (either case, bare, spaced or with colons),
    a Python bytes repr, and the raw bytes themselves."""
    hexa = secret.hex()
    pairs = [hexa[i:i + 2] for i in range(0, len(hexa), 2)]
    out = []
    for h, p in ((hexa, pairs), (hexa.upper(), [x.upper() for x in pairs])):
        out += [h, " ".join(p), ":".join(p)]
    out += [repr(secret)[2:-1], secret.decode("latin-1")]
    return out


def assert_no_leak(text: str, secrets: list[bytes], what: str) -> None:
    squeezed = re.sub(r"[\s:]", "", text)
    for secret in secrets:
        for needle in needles(secret):
            assert needle not in text, f"{what}: key bytes appear in the output"
        hexa = secret.hex()
        assert hexa not in squeezed.lower(), f"{what}: key hex appears (split) in the output"


def run(capfd: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    status = main(argv)
    out, err = capfd.readouterr()
    return status, out + err


def assert_deciphered(mode: str, text: str) -> None:
    """The keys were in use: at least one tag verified."""
    if mode == "--json":
        rows = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert any(r["security"] and r["security"]["tag_verified"] is True
                   and r["security"]["key_name"] for r in rows)
    else:  # the summary line and the -V tree's deciphered block
        assert "tag OK" in text


@pytest.fixture(autouse=True)
def _no_default_keystore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DLMS_KEYS", raising=False)


@pytest.mark.parametrize("mode", ["summary", "-V", "--json"])
@pytest.mark.parametrize("source", ["flags", "file"])
@pytest.mark.parametrize("command", ["read", "decode"])
@pytest.mark.parametrize("case_name", sorted(CASES))
def test_outputs_never_show_keys(case_name: str, command: str, source: str, mode: str,
                                 tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    case = CASES[case_name]()
    keys = case.flags() if source == "flags" else ["--keys", str(case.keystore_file(tmp_path))]
    target = [str(case.capture)] if command == "read" else case.frames_hex()
    argv = [command, *target, *([] if mode == "summary" else [mode]), *keys]
    status, text = run(capfd, argv)
    assert status == 0, text[-2000:]
    assert_deciphered(mode, text)
    assert_no_leak(text, case.secrets(), f"{case_name} {command} {source} {mode}")


@pytest.mark.parametrize("case_name", sorted(CASES))
def test_read_stats_never_show_keys(case_name: str, tmp_path: Path,
                                    capfd: pytest.CaptureFixture[str]) -> None:
    case = CASES[case_name]()
    argv = ["read", str(case.capture), "--stats", "--keys", str(case.keystore_file(tmp_path))]
    status, text = run(capfd, argv)
    assert status == 0, text[-2000:]
    assert_deciphered("summary", text)
    assert_no_leak(text, case.secrets(), f"{case_name} read --stats")


@pytest.mark.parametrize("case_name", sorted(CASES))
def test_keys_check_never_shows_keys(case_name: str, tmp_path: Path,
                                     capfd: pytest.CaptureFixture[str]) -> None:
    case = CASES[case_name]()
    path = case.keystore_file(tmp_path)
    status, text = run(capfd, ["keys", "check", str(path)])
    assert status == 0, text
    assert "OK" in text
    assert_no_leak(text, case.secrets(), f"keys check {case_name}")


BAD_ENTRIES = {
    "short key": lambda k: f'ek = "{k[:-2]}"',
    "odd hex": lambda k: f'ek = "{k[:-1]}"',
    "not hex": lambda k: f'ek = "{k[:-1]}G"',
    "long key": lambda k: f'ak = "{k}{k[:2]}"',
    "unknown field": lambda k: f'guek = "{k}"',
    "not a string": lambda k: f"ek = 0x{k}",
    "toml syntax": lambda k: f"ek = {k}",
}


@pytest.mark.parametrize("problem", sorted(BAD_ENTRIES))
def test_bad_keystore_messages_never_quote_the_key(problem: str, tmp_path: Path,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    case = interop_case()
    path = tmp_path / "bad.toml"
    path.write_text(f'[[meter]]\nname = "m"\n{BAD_ENTRIES[problem](case.ek)}\n')
    path.chmod(0o600)
    # the secret that must not show: the key material as written, which may be malformed
    written = re.search(r"[0-9A-Fa-f]{30,}G?", path.read_text()).group(0)
    values = [bytes.fromhex(case.ek)]
    status, text = run(capfd, ["keys", "check", str(path)])
    assert status == 1, text
    assert "error" in text
    assert written not in text and written.lower() not in text
    assert_no_leak(text, values, f"keys check ({problem})")
    status, text = run(capfd, ["read", str(case.capture), "--keys", str(path)])
    assert status == 2, text
    assert written not in text and written.lower() not in text
    assert_no_leak(text, values, f"read --keys ({problem})")


@pytest.mark.parametrize("value", ["odd", "short", "not hex"])
def test_bad_key_flag_is_not_echoed(value: str, capfd: pytest.CaptureFixture[str]) -> None:
    case = interop_case()
    bad = {"odd": case.ek[:-1], "short": case.ek[:-2], "not hex": case.ek[:-1] + "G"}[value]
    status, text = run(capfd, ["read", str(case.capture), "--ek", bad, "--ak", case.ak])
    assert status == 2, text
    assert "--ek" in text
    assert bad not in text and bad.lower() not in text
    assert_no_leak(text, [bytes.fromhex(case.ak)], f"--ek {value}")


def test_separate_process_output(tmp_path: Path) -> None:
    """The installed entry point in its own process: stdout and stderr, nothing captured in
    between."""
    case = interop_case()
    env = {k: v for k, v in os.environ.items() if k != "DLMS_KEYS"}
    proc = subprocess.run([sys.executable, "-m", "dissector", "read", str(case.capture), "-V",
                           "--keys", str(case.keystore_file(tmp_path))],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_deciphered("-V", proc.stdout)
    assert_no_leak(proc.stdout + proc.stderr, case.secrets(), "subprocess read -V")
