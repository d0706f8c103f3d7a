"""Gurux client/server captures (../shared/corpus/interop): every ciphered APDU deciphers to the
plaintext Gurux logged, with the key kind and verdict of verify.txt; the dedicated key is learned
from the AARQ, never given."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import CORPUS

from dissector.analysis.capture import dissect_capture
from dissector.analysis.pipeline import Dissector
from keys.keystore import keystore_from_flags

SCENARIOS = sorted(p.name for p in (CORPUS / "interop").glob("*") if p.is_dir()) \
    if (CORPUS / "interop").is_dir() else []
VERIFY = re.compile(r"^apdu (\d+) (C->S|S->C) 0x(\w\w)(?: \(in 0x(\w\w)\))? SC=(\w\w) IC=(\d+) "
                    r"ST=(\w+) key=(\w+): tag (\w+); plain=(\w*)")


def _keystore(scenario: Path):
    k = json.loads((scenario / "keys.json").read_text())
    return keystore_from_flags(ek=k["ek"], ak=k["ak"], bek=k.get("broadcast_key"),
                               hls_secret=(f"text:{k['hls_secret']}" if k.get("hls_secret")
                                           else None))


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_deciphers_like_gurux(name: str) -> None:
    scenario = CORPUS / "interop" / name
    if not scenario.is_dir():
        pytest.skip(f"shared corpus not found at {scenario}")
    tsv = [line.split("\t") for line in (scenario / "apdus.tsv").read_text().splitlines()
           if line and not line.startswith("#")]
    dis = Dissector(_keystore(scenario))
    records = [r for r in dissect_capture(str(scenario / "capture.pcap"), dis)
               if r.transport != "hdlc" or r.frame_packets]
    assert [r.packet.original.hex().upper() if r.packet.original else "" for r in records] == \
        [row[4].upper() for row in tsv]
    expected = {}
    for line in (scenario / "verify.txt").read_text().splitlines():
        m = VERIFY.match(line)
        if m:
            expected[int(m.group(1))] = m
    for i, rec in enumerate(records):
        # GuruxDLMS.c writes the RLRE user-information BER length one short (34 for 35
        # bytes): a real malformation that must be reported, while the content still deciphers.
        errors = [f for f in rec.all_findings() if f.severity == "error"
                  and not f.code.startswith("assoc.")
                  and not (rec.apdu == "rlre" and f.code == "acse.bad-length")]
        assert not errors, (i, errors)
        m = expected.get(i)
        if m is None:
            assert rec.security() is None or not rec.security()["encrypted"], i
            continue
        sec = rec.security()
        assert sec is not None, i
        assert sec["control"] == int(m.group(5), 16) and sec["invocation_counter"] == \
            int(m.group(6))
        assert sec["system_title"] == m.group(7)
        assert sec["key_kind"] == {"global": "global-unicast", "dedicated": "dedicated",
                                   "broadcast": "global-broadcast"}[m.group(8)], i
        assert sec["tag_verified"] is (m.group(9) == "ok"), i
        assert rec.plaintext().hex().upper() == m.group(10).upper(), i


@pytest.mark.parametrize("name", [n for n in SCENARIOS if n[0] in "bceg"])
def test_hls_passes_are_verified(name: str) -> None:
    """Mechanisms 5 (GMAC, with EK+AK) and 2 (AES-ECB with the HLS secret): pass 3 and pass 4
    of Gurux's exchanges verify; keys.json says which mechanism ran."""
    scenario = CORPUS / "interop" / name
    mech = json.loads((scenario / "keys.json").read_text())["mechanism"]
    dis = Dissector(_keystore(scenario))
    codes = [f.code for r in dissect_capture(str(scenario / "capture.pcap"), dis)
             for f in r.all_findings()]
    if mech in (2, 5):
        assert codes.count("assoc.hls-verified") == 2, codes
    assert "assoc.hls-mismatch" not in codes
