"""`-Y` display filters with Wireshark's semantics, on the seed case (seed-case.md: the AARQ,
the AARE, HLS pass 3 sent ded-ciphered, the meter's deciphering-error answer)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dissector.cli.main import main
from dissector.output.filter import FIELDS, FilterError, compile_filter

ROOT = Path(__file__).resolve().parent.parent
SEED = [str(ROOT / "pcaps" / "seed-case.pcap"), "--keys",
        str(ROOT / "pcaps" / "seed-case.keys.toml")]

# filter -> the frames of the seed case it keeps (each record is one frame there)
TABLE = {
    'security.key_kind == "dedicated"': [3],
    'security.key_kind eq "global-unicast"': [1, 2],
    "security.key_kind": [1, 2, 3],  # present
    "!security": [4],
    'apdu == "aarq" || apdu == "aare"': [1, 2],
    'apdu == "aarq" or apdu == "aare"': [1, 2],
    'apdu contains "action" && security.tag_verified': [3],
    'apdu contains "action" and not security.tag_verified': [],
    'apdu matches "^A.R[QE]$"': [1, 2],  # case-insensitive, as Wireshark's
    'direction != "client->server"': [2, 4],
    "security.invocation_counter >= 3": [2, 3],
    "security.invocation_counter < 3": [1],
    "security.invocation_counter gt 1000": [2],
    "frames in {1 4}": [1, 4],
    'apdu in {"aare", "confirmed-service-error"}': [2, 4],
    # list fields: == matches when any element does, != when none does (Wireshark 4)
    'expert.severity == "error"': [],  # nothing malformed in the seed case
    'expert.severity == "warning"': [1, 3, 4],
    'expert.severity != "warning"': [2],  # no finding at all
    'expert.severity != "note"': [2, 4],
    'expert.code == "assoc.ded-before-auth"': [3],
    'expert.severity ~= "note"': [1, 3, 4],  # some finding is not a note
    'expert.severity === "warning"': [4],  # every finding a warning
    "expert": [1, 3, 4],  # present: not empty
    "response_time > 0.2": [2, 4],
    "security.tag_verified == true": [1, 2, 3],
    "security.tag_verified == 1": [],  # true is not 1
    "number == 2": [2],
}


def _frames(filt: str) -> list[int]:
    out = io.StringIO()
    assert main(["read", *SEED, "--json", "-Y", filt], out) == 0
    return [json.loads(line)["frames"][0] for line in out.getvalue().splitlines()]


@pytest.mark.parametrize("filt", sorted(TABLE))
def test_filter_table(filt: str) -> None:
    assert _frames(filt) == TABLE[filt]


@pytest.mark.parametrize("filt, word", [
    ("nosuchfield == 1", "nosuchfield"),
    ("frame.number == 1", "frame.number"),
    ('Apdu == "aarq"', "Apdu"),
    ("(((", "ends too early"),
    ('apdu == "aarq" &&', "ends too early"),
    ("apdu ==", "ends too early"),
    ('apdu == "x" )', "unexpected"),
    ("apdu @ 3", "cannot parse"),
    ("frames in 3", "set"),
    ('apdu matches "("', "regular expression"),
    ("", "empty"),
])
def test_filter_errors_name_the_problem(filt: str, word: str) -> None:
    with pytest.raises(FilterError, match=word.replace("(", r"\(")):
        compile_filter(filt)


def test_an_unknown_field_is_status_2_and_named() -> None:
    proc = subprocess.run([sys.executable, "-m", "dissector", "read", *SEED, "-Y",
                           "nosuchfield == 1"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "'nosuchfield' is not a field" in proc.stderr


def test_fields_command_lists_every_field() -> None:
    out = io.StringIO()
    assert main(["fields"], out) == 0
    listed = [line.split("\t")[0] for line in out.getvalue().splitlines()]
    assert listed == list(FIELDS)
    # every listed field is a path of a real record (the contract's keys)
    row = json.loads(_json_first())
    for path in listed:
        head, _, rest = path.partition(".")
        assert head in row, path
        if rest and isinstance(row[head], dict):
            assert rest in row[head], path


def _json_first() -> str:
    out = io.StringIO()
    assert main(["read", *SEED, "--json", "-Y", "number == 1"], out) == 0
    return out.getvalue().splitlines()[0]
