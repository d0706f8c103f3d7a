"""The broken traffic of the shared corpus produces findings, never exceptions: the deliberately
altered Circutor captures (data1..data7), the PRIME captures, and every manifest item marked
`partial` or `not verified`, in every output format, with and without the published keys.
"""

from __future__ import annotations

import io
import json
import sys

import pytest
from conftest import CORPUS, ROOT, corpus_path

from dissector.analysis.capture import iter_pdus
from dissector.cli.main import main
from layers.expert import Finding

sys.path.insert(0, str(ROOT / "fuzz"))

ALTERED = [f"Circutor_dlms-analysis_data{n}.pcapng" for n in range(1, 8)]
PRIME = ["Circutor_dlms-analysis_PRIME.pcap", "Circutor_dlms-analysis_PRIME_1.4.pcap"]
#: What each alteration shows (finding codes, any of them), from the manifest descriptions and
#: the differences with original_data.pcapng.
EXPECTED = {
    1: {"hdlc.bad-fcs"},  # AARQ frame with a bad FCS
    2: {"acse.bad-length"},  # application-context-name OID length 9 in a 9-byte component
    3: {"acse.component-extra-bytes"},  # OID length 3: bytes left in the component
    4: {"apdu.trailing-bytes", "hdlc.empty-i-frame"},  # set-response tag on a get-request
    5: {"hdlc.empty-i-frame"},  # the server answers with I frames that carry nothing
    6: {"hdlc.empty-i-frame"},
    7: {"hdlc.bad-fcs", "hdlc.bad-length"},  # one malformed HDLC frame
}


def read_json(path: str, *extra: str) -> list[dict]:
    out = io.StringIO()
    assert main(["read", path, "--json", *extra], out) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def expert_codes(rows: list[dict]) -> set[str]:
    return {f["code"] for row in rows for f in row.get("expert", [])}


@pytest.mark.parametrize("name", ALTERED)
def test_altered_circutor_capture_has_findings(name: str) -> None:
    path = str(corpus_path(name))
    codes = expert_codes(read_json(path))
    n = int(name.split("data")[1][0])
    assert EXPECTED[n] <= codes, sorted(codes)
    for mode in ([], ["-V"]):
        out = io.StringIO()
        assert main(["read", path, *mode], out) == 0 and out.getvalue()


def test_unaltered_circutor_capture_has_no_findings() -> None:
    """The control: the capture the altered ones were made from is clean."""
    rows = read_json(str(corpus_path("Circutor_dlms-analysis_original_data.pcapng")))
    assert not expert_codes(rows)


@pytest.mark.parametrize("name", PRIME)
def test_prime_capture_is_reported_as_unsupported(name: str) -> None:
    notes = [i for i in iter_pdus(str(corpus_path(name))) if isinstance(i, Finding)]
    assert [n.code for n in notes] == ["prime.unsupported"]
    assert "PRIME" in notes[0].message and "7919" in notes[0].message
    for mode in ([], ["-V"], ["--json"]):
        assert main(["read", str(corpus_path(name)), *mode], io.StringIO()) == 0


@pytest.mark.parametrize("name", PRIME)
def test_prime_capture_finding_reaches_the_output(name: str) -> None:
    assert "prime.unsupported" in expert_codes(read_json(str(corpus_path(name))))


def _weak_items() -> list[dict]:
    path = CORPUS / "manifest.json"
    if not path.is_file():
        return []
    return [i for i in json.loads(path.read_text())["items"]
            if i.get("verification_level") in ("partial", "not verified")]


def _item_keys(item: dict) -> list[str]:
    keys = item.get("keys") or {}
    out = []
    for flag, names in (("--ek", ("EK", "GUEK")), ("--ak", ("AK", "GAK"))):
        for name in names:
            value = (keys.get(name) or "").split(" ")[0]
            if len(value) == 32:
                out += [flag, value]
                break
    return out


def test_the_manifest_has_weak_items() -> None:
    assert len(_weak_items()) >= 6 or not CORPUS.is_dir()


@pytest.mark.parametrize("item", _weak_items(), ids=lambda i: i["id"])
def test_partial_or_unverified_item_has_findings(item: dict) -> None:
    frames = [f["hex"] for f in item.get("frames", []) if f.get("hex")]
    lines = frames or [item.get("hex") or item.get("apdu_hex")]
    plain = [f["plaintext_hex"] for f in item.get("frames", []) if f.get("plaintext_hex")]
    if item.get("plaintext_hex"):
        plain.append(item["plaintext_hex"])
    for keys in ([], _item_keys(item)):
        for mode in ([], ["-V"], ["--json"]):
            out = io.StringIO()
            assert main(["decode", *mode, *keys, *lines], out) == 0
        out = io.StringIO()
        assert main(["decode", "--json", *keys, *lines], out) == 0
        rows = [json.loads(line) for line in out.getvalue().splitlines()]
        assert expert_codes(rows), f"{item['id']}: no finding"
    for text in plain:  # the published plaintext (a firmware log, partial) dissects too
        assert main(["decode", text], io.StringIO()) == 0
