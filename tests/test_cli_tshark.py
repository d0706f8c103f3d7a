"""`read` flags that tshark has too (`-r -` and pipes, `-c`, `-T fields -e -E`), checked against
the real tshark on the same capture, and compressed captures read as the plain file."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import corpus_path, require

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "pcaps" / "seed-case.pcap"
SEED_KEYS = ["--keys", str(ROOT / "pcaps" / "seed-case.keys.toml")]


def tshark() -> str:
    return require("tshark", "tshark")


def ours(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "dissector", *args], input=stdin,
                          capture_output=True, cwd=ROOT, timeout=120)


def theirs(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([tshark(), *args], input=stdin, capture_output=True, timeout=120)


def records(proc: subprocess.CompletedProcess[bytes]) -> list[dict]:
    assert proc.returncode == 0, proc.stderr.decode()[-500:]
    return [json.loads(x) for x in proc.stdout.decode().splitlines() if '"apdu"' in x]


def test_standard_input_as_tshark_reads_it() -> None:
    """`read -` and `read -r -` read a capture from a pipe, as `tshark -r -` does."""
    capture = corpus_path("interop", "c_gmac_authenc_ded", "capture.pcap")
    data = capture.read_bytes()
    frames = theirs("-r", "-", "-T", "fields", "-e", "frame.number", stdin=data)
    assert frames.returncode == 0
    assert len(frames.stdout.split()) > 0  # tshark reads the pipe
    whole = records(ours("read", str(capture), "--json"))
    assert records(ours("read", "-", "--json", stdin=data)) == whole
    assert records(ours("read", "-r", "-", "--json", stdin=data)) == whole
    assert records(ours("read", "-", "--json", "--jobs", "2", stdin=data)) == whole


@pytest.mark.parametrize("count", [1, 5, 12])
def test_count_reads_the_first_n_capture_records_as_tshark(count: int) -> None:
    """`-c N`: tshark shows frames 1..N; ours gives exactly the records of a whole read whose
    frames all lie within them."""
    capture = corpus_path("interop", "c_gmac_authenc_ded", "capture.pcap")
    shown = theirs("-r", str(capture), "-c", str(count), "-T", "fields", "-e", "frame.number")
    assert [int(x) for x in shown.stdout.split()] == list(range(1, count + 1))
    whole = records(ours("read", str(capture), "--json"))
    within = [r for r in whole if max(r["frames"]) <= count]
    got = records(ours("read", str(capture), "--json", "-c", str(count)))
    assert [(r["frames"], r["apdu"]) for r in got] == [(r["frames"], r["apdu"]) for r in within]


def test_fields_output_follows_tshark_rules() -> None:
    """`-T fields -e ... -E header=y -E quote=d -E separator=,`: a header of the field names
    (not quoted), then every value quoted, as tshark prints them on the same capture."""
    capture = corpus_path("interop", "c_gmac_authenc_ded", "capture.pcap")
    opts = ["-E", "header=y", "-E", "quote=d", "-E", "separator=,"]
    t = theirs("-r", str(capture), "-c", "3", "-T", "fields", "-e", "frame.number",
               "-e", "ip.src", *opts).stdout.decode().splitlines()
    o = ours("read", str(capture), "-c", "9", "-T", "fields", "-e", "number", "-e", "apdu",
             *opts).stdout.decode().splitlines()
    assert t[0] == "frame.number,ip.src" and o[0] == "number,apdu"
    for line in t[1:] + o[1:]:
        cells = line.split(",")
        assert len(cells) == 2 and all(c.startswith('"') and c.endswith('"') for c in cells)
    assert [line.split(",")[0] for line in o[1:]] == [f'"{n}"' for n in range(1, len(o))]


def test_fields_of_the_seed_case() -> None:
    """seed-case.md: AARQ and AARE under the global key, pass 3 under the dedicated key, the
    meter's answer in clear; tab-separated, list fields joined by commas, booleans as 1/0."""
    out = ours("read", str(SEED), *SEED_KEYS, "-T", "fields", "-e", "apdu", "-e",
               "security.key_kind", "-e", "security.tag_verified", "-e", "frames")
    assert out.returncode == 0
    assert out.stdout.decode().splitlines() == [
        "aarq\tglobal-unicast\t1\t1", "aare\tglobal-unicast\t1\t2",
        "ded-action-request\tdedicated\t1\t3", "confirmed-service-error\t\t\t4"]


def test_an_unknown_field_or_option_is_named() -> None:
    out = ours("read", str(SEED), "-T", "fields", "-e", "nosuch")
    assert out.returncode == 2 and b"'nosuch'" in out.stderr
    out = ours("read", str(SEED), "-e", "apdu")
    assert out.returncode == 2 and b"-T fields" in out.stderr
    out = ours("read", str(SEED), "--no-such", "--ek=00112233445566778899AABBCCDDEEFF")
    assert out.returncode == 2 and b"--no-such" in out.stderr
    assert b"00112233" not in out.stderr


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress])
def test_compressed_captures_and_pipes(tmp_path: Path, compress) -> None:  # type: ignore[no-untyped-def]
    whole = records(ours("read", str(SEED), *SEED_KEYS, "--json"))
    packed = compress(SEED.read_bytes())
    path = tmp_path / "seed.pcap.x"
    path.write_bytes(packed)
    assert records(ours("read", str(path), *SEED_KEYS, "--json")) == whole
    assert records(ours("read", "-", *SEED_KEYS, "--json", stdin=packed)) == whole


def test_version() -> None:
    out = ours("--version")
    assert out.returncode == 0 and out.stdout.decode().startswith("dlms-dissect ")


@pytest.mark.parametrize("form", ["a", "ad", "u", "ud", "r", "d", "dd", "e"])
@pytest.mark.parametrize("display", [None, "2"])  # all records, or all but the second
def test_time_formats_as_tshark(form: str, display: str | None) -> None:
    """`-t`: the time column as tshark's on the same capture (the seed case: one APDU a frame,
    so records and frames line up), with and without a display filter (`d` counts from the
    previous record shown or not, `dd` from the previous one shown)."""
    env = {**os.environ, "TZ": "UTC"}
    ours_filter = ["-Y", f"number != {display}"] if display else []
    their_filter = ["-Y", f"frame.number != {display}"] if display else []
    theirs_out = subprocess.run([tshark(), "-r", str(SEED), "-t", form, *their_filter, "-T",
                                 "fields", "-e", "_ws.col.Time"], capture_output=True,
                                timeout=120, env=env).stdout.decode().split("\n")
    got = subprocess.run([sys.executable, "-m", "dissector", "read", str(SEED), "-t", form,
                          *ours_filter], capture_output=True, cwd=ROOT, timeout=120, env=env)
    lines = [line for line in got.stdout.decode().splitlines() if line[:4].strip().isdigit()]
    width = 2 if form in ("ad", "ud") else 1
    stamps = [" ".join(line.split()[1:1 + width]) for line in lines]
    want = [t for t in theirs_out if t]
    if form == "e":  # tshark prints nine decimals, ours six
        assert [float(s) for s in stamps] == pytest.approx([float(t) for t in want])
    else:
        assert stamps == want


def test_quiet_statistics_and_a_clean_json_stream() -> None:
    """`-q -z assoc` prints only the statistics (as `tshark -q -z`); beside JSON records the
    statistics go to stderr, so stdout stays one JSON object a line."""
    quiet = ours("read", str(SEED), *SEED_KEYS, "-q", "-z", "assoc")
    assert quiet.returncode == 0
    text = quiet.stdout.decode()
    assert text.lstrip().startswith("== associations ==") and '"apdu"' not in text
    assert json.loads(text.split("== associations ==")[1])["server_system_title"] == \
        "474F450000581CF1"  # seed-case.md: the AARE's responding-AP-title
    mixed = ours("read", str(SEED), *SEED_KEYS, "--json", "--stats")
    lines = mixed.stdout.decode().splitlines()
    assert [json.loads(x)["frames"] for x in lines if '"apdu"' in x] == [[1], [2], [3], [4]]
    assert all(x.startswith("{") for x in lines)
    assert "== associations ==" in mixed.stderr.decode()
    bad = ours("read", str(SEED), "-z", "io,stat,0")
    assert bad.returncode == 2 and b"-z io" in bad.stderr


def test_hex_dump_as_tshark() -> None:
    """`-x`: each record's frame bytes dumped as tshark -x dumps the same frames (the seed
    case: one frame a record), then the deciphered APDU with its dedicated key withheld."""
    import re

    dump = re.compile(r"^[0-9a-f]{4}  ")
    theirs_out = theirs("-r", str(SEED), "-x").stdout.decode()
    their_blocks = [[x for x in block.splitlines() if dump.match(x)]
                    for block in theirs_out.strip().split("\n\n")]
    text = ours("read", str(SEED), *SEED_KEYS, "-x").stdout.decode()
    records = re.split(r"(?m)^ {0,3}\d+ \d", text)[1:]
    ours_blocks = [[x for x in r.split("deciphered APDU:")[0].splitlines() if dump.match(x)]
                   for r in records]
    assert ours_blocks == their_blocks and len(ours_blocks) == 4
    assert "deciphered APDU:\n0000  01 01 10 00 00 00" in records[0]  # the key zeroed
