"""The command line: decode from stdin, bad input, read with filters, stats and -w."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.utils import PcapNgReader

from dissector.cli.main import main
from layers.wrapper import Wrapper

ROOT = Path(__file__).resolve().parent.parent
SEED_PCAP = ROOT / "pcaps" / "seed-case.pcap"
SEED_KEYS = ROOT / "pcaps" / "seed-case.keys.toml"
ERROR = "7E A0 10 61 03 52 7C E2 E6 E7 00 0E 06 00 06 DD 48 7E"


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dissector", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_decode_reads_stdin_and_tolerates_separators() -> None:
    res = cli("decode", stdin="0x7E:A0:10:61:03:52:7C:E2:E6:E7:00:0E:06:00:06:DD:48:7E\n\n")
    assert res.returncode == 0, res.stderr
    assert "confirmed-service-error" in res.stdout


def test_decode_splits_frames_on_one_line() -> None:
    out = io.StringIO()
    assert main(["decode", "--json", (ERROR + " " + ERROR).replace(" ", "")], out) == 0
    assert len([x for x in out.getvalue().splitlines() if '"apdu"' in x]) == 2


def test_non_hex_is_a_clear_error() -> None:
    res = cli("decode", "7EA0ZZ")
    assert res.returncode == 2
    assert res.stderr.startswith("dlms-dissect: ") and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_malformed_frame_is_a_finding_with_status_0() -> None:
    res = cli("decode", "--json", "7EA0106103527CE2E6E7000E0600")
    assert res.returncode == 0
    codes = [f["code"] for line in res.stdout.splitlines() for f in json.loads(line)["expert"]]
    assert any(c.startswith(("hdlc.", "malformed.")) for c in codes), codes


def test_missing_capture_and_bad_keystore_are_one_line_errors(tmp_path: Path) -> None:
    res = cli("read", str(tmp_path / "nope.pcap"))
    assert res.returncode == 2 and "nope.pcap" in res.stderr and "Traceback" not in res.stderr
    bad = tmp_path / "keys.toml"
    bad.write_text('[[meter]]\nname = "x"\nek = "zz"\n')
    res = cli("read", str(SEED_PCAP), "--keys", str(bad))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    not_capture = tmp_path / "x.pcap"
    not_capture.write_text("hello")
    res = cli("read", str(not_capture))
    assert res.returncode == 2 and "not a pcap" in res.stderr


def test_keys_check(tmp_path: Path) -> None:
    assert cli("keys", "check", str(SEED_KEYS)).returncode == 0
    bad = tmp_path / "k.toml"
    bad.write_text('[[meter]]\nname = "m"\nek = "0011"\n')
    bad.chmod(0o600)
    res = cli("keys", "check", str(bad))
    assert res.returncode == 1 and "ek" in res.stdout


def test_read_seed_case_findings_filter_and_stats(tmp_path: Path) -> None:
    out = io.StringIO()
    assert main(["read", str(SEED_PCAP), "--keys", str(SEED_KEYS), "--json"], out) == 0
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    codes = [[f["code"] for f in r["expert"]] for r in rows]
    assert "assoc.mechanism2-ciphered" in codes[0]
    assert "assoc.ded-before-auth" in codes[2]
    assert "assoc.hls-verified" in codes[2]  # mechanism 2: AES-ECB of StoC under the secret
    assert "assoc.error-response" in codes[3]
    assert rows[2]["security"]["key_kind"] == "dedicated"
    assert rows[2]["security"]["key_name"] == "AARQ frame 1"
    assert rows[2]["security"]["tag_verified"] is True and rows[2]["inner"] == "action-request"
    err = next(f for f in rows[3]["expert"] if f["code"] == "assoc.error-response")
    assert err["message"] == "deciphering-error answers frame 3 (ded-action-request," \
        " dedicated key)"
    out = io.StringIO()
    assert main(["read", str(SEED_PCAP), "--keys", str(SEED_KEYS), "--json", "-Y",
                 'security.key_kind == "dedicated"'], out) == 0
    assert [json.loads(x)["frames"] for x in out.getvalue().splitlines()] == [[3]]
    out = io.StringIO()
    assert main(["read", str(SEED_PCAP), "--keys", str(SEED_KEYS), "--stats"], out) == 0
    stats = out.getvalue().split("== associations ==")[1]
    st = json.loads(stats)
    assert st["mechanism"].startswith("high") and st["keys_used"] == {
        "dedicated": 1, "global-unicast": 2}


def test_write_pcapng_with_plaintext_and_comments(tmp_path: Path) -> None:
    target = tmp_path / "out.pcapng"
    out = io.StringIO()
    assert main(["read", str(SEED_PCAP), "--keys", str(SEED_KEYS), "-w", str(target)], out) == 0
    pkts = list(PcapNgReader(str(target)))
    assert len(pkts) == 4
    pass3 = pkts[2]
    assert bytes(pass3[Wrapper].payload)[:2] == bytes.fromhex("C301")
    # for people, the record as `read` prints it: its summary line, then each finding
    line, *findings, record = [c.decode() for c in pass3.comments]
    assert line.startswith("client->server  serial 1 hdlc 48-1  [3]  ded-action-request")
    assert "key=dedicated (AARQ frame 1), tag OK]" in line
    assert findings == [f"{f['severity']}: {f['code']}: {f['message']}"
                        for f in json.loads(record[len("dlmsd:"):])["expert"]]
    assert any(f.startswith("warning: assoc.ded-before-auth") for f in findings)


def test_written_pcapng_is_the_same_on_every_machine(tmp_path: Path) -> None:
    """The Ethernet addresses are fixed (client 02:00:00:00:00:01, server ...:02): nothing is
    looked up on this host, so the command (which does not load Scapy's routes) warns nothing
    and writes what an in-process run writes."""
    here, there = tmp_path / "in.pcapng", tmp_path / "cmd.pcapng"
    assert main(["read", str(SEED_PCAP), "--keys", str(SEED_KEYS), "-w", str(here)],
                io.StringIO()) == 0
    res = cli("read", str(SEED_PCAP), "--keys", str(SEED_KEYS), "-w", str(there))
    assert res.returncode == 0 and "WARNING" not in res.stderr, res.stderr
    assert there.read_bytes() == here.read_bytes()
    pkts = list(PcapNgReader(str(there)))
    assert [(p.src, p.dst) for p in pkts[:2]] == [("02:00:00:00:00:01", "02:00:00:00:00:02"),
                                                  ("02:00:00:00:00:02", "02:00:00:00:00:01")]


@pytest.mark.parametrize("mode", [[], ["-V"], ["--json"]])
def test_every_output_mode_runs_on_every_interop_capture(mode: list[str]) -> None:
    from conftest import CORPUS

    for capture in sorted((CORPUS / "interop").glob("*/capture.pcap*")):
        out = io.StringIO()
        assert main(["read", str(capture), *mode], out) == 0
        assert out.getvalue()


def test_jobs_output_equals_serial_output() -> None:
    from conftest import CORPUS

    for capture in [CORPUS / "htanwar922_Output-Ciphered-Simple-Key.pcap",
                    CORPUS / "interop" / "c_gmac_authenc_ded" / "capture.pcap"]:
        one, two = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(one):  # --json: the statistics come on stderr
            assert main(["read", str(capture), "--json", "--stats"], one) == 0
        with contextlib.redirect_stderr(two):
            assert main(["read", str(capture), "--json", "--stats", "--jobs", "2"], two) == 0
        assert one.getvalue() == two.getvalue() and one.getvalue().count("\n") > 50


def test_decode_mbus_and_mode_e_lines() -> None:
    """M-Bus frames and an IEC 62056-21 sign-on pasted as hex lines (issue: more link layers)."""
    from conftest import corpus_path

    items = json.loads(corpus_path("manifest.json").read_text())["items"]
    item = next(i for i in items if i["id"] == "item008")
    out = io.StringIO()
    assert main(["decode", "--json", item["hex"], "--ek", "101112131415161718191A1B1C1D1E1F"],
                out) == 0
    (row,) = [json.loads(x) for x in out.getvalue().splitlines()]
    assert row["inner"] == "data-notification" and row["direction"] == "server->client"
    assert row["plaintext"] == item["plaintext_hex"].upper()
    out = io.StringIO()
    lines = [b"/?!\r\n".hex(), b"/XYZ5\\2METER-0001\r\n".hex(), b"\x06252\r\n".hex(),
             "7EA00802232193BD647E"]
    assert main(["decode", "--json", *lines], out) == 0
    assert [json.loads(x)["apdu"] for x in out.getvalue().splitlines()] == [
        "mode-e-sign-on", "mode-e-identification", "mode-e-acknowledge", "hdlc-snrm"]
