"""The seven htanwar922/wireshark-dlms captures (../shared/corpus/htanwar922_*.pcap): Gurux
client/server traffic over the TCP wrapper, read with `dissect_capture` and deciphered with the
keys their manifest items publish. Counts and verdicts are the manifest's: APDUs per capture and
per first byte, ciphered APDUs (1,065 in all, corpus README), tags verified, none failed, and the
sample decryptions byte for byte. The manifest counts Green Book APDUs only: the two ciphered
access-request/-response per capture that Gurux sends under the non-standard outer tag 0x00 are
checked apart (flagged, and deciphered as the manifest says they decipher)."""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from typing import Any

import pytest
from conftest import CORPUS, corpus_path

from dissector.analysis.capture import dissect_capture
from dissector.analysis.pipeline import Dissector
from dissector.analysis.record import ApduRecord
from keys.keystore import keystore_from_flags

SOURCE = "htanwar922/wireshark-dlms"
CAPTURES = sorted(p.name for p in CORPUS.glob("htanwar922_*.pcap")) if CORPUS.is_dir() else []
TOTAL_CIPHERED = 1065  # corpus README


def _manifest_items() -> dict[str, dict[str, Any]]:
    """Manifest items of this source, by capture file name."""
    manifest = json.loads(corpus_path("manifest.json").read_text())
    return {i["pcap_file"]: i for i in manifest["items"] if i["source_repo"] == SOURCE}


@cache
def _item(name: str) -> dict[str, Any]:
    items = _manifest_items()
    assert name in items, f"{name}: no manifest item"
    return items[name]


@cache
def _records(name: str) -> tuple[ApduRecord, ...]:
    keys = _item(name).get("keys") or {}
    store = keystore_from_flags(ek=keys.get("EK"), ak=keys.get("AK"))
    return tuple(dissect_capture(str(corpus_path(name)), Dissector(store)))


def _ciphered(records: tuple[ApduRecord, ...]) -> list[ApduRecord]:
    out = []
    for rec in records:
        sec = rec.security()
        if sec is not None and (sec["encrypted"] or sec["authenticated"]):
            out.append(rec)
    return out


def _tag_zero(rec: ApduRecord) -> bool:
    """Gurux's non-standard outer tag 0x00 (len, SC, IC, ciphertext[, tag])."""
    return bytes(rec.packet.original[:1]) == b"\x00"


def _sender(rec: ApduRecord) -> str:
    """`ip:port` of the side that sent the APDU, from the link `tcp CLIENT-SERVER`."""
    proto, _, ends = rec.link.partition(" ")
    assert proto == "tcp", rec.link
    client, server = ends.split("-")
    return client if rec.direction == "client->server" else server


def test_seven_captures_with_their_items() -> None:
    items = _manifest_items()
    assert len(items) == 7
    assert sorted(items) == CAPTURES
    assert sum(i.get("ciphered_apdus", 0) for i in items.values()) == TOTAL_CIPHERED


@pytest.mark.parametrize("name", CAPTURES)
def test_apdus_per_capture_and_first_byte(name: str) -> None:
    item = _item(name)
    records = _records(name)
    assert len(records) == item["dlms_pdus"]
    assert all(r.transport == "wrapper" for r in records)
    first = Counter(bytes(r.packet.original[:1]).hex() for r in records)
    assert dict(first) == item["apdu_first_byte_counts"]


@pytest.mark.parametrize("name", CAPTURES)
def test_ciphered_apdus_decipher_with_manifest_verdicts(name: str) -> None:
    item = _item(name)
    found = _ciphered(tuple(r for r in _records(name) if not _tag_zero(r)))
    assert len(found) == item.get("ciphered_apdus", 0)
    verdicts = Counter(r.security()["tag_verified"] for r in found)
    assert verdicts[True] == item.get("ciphered_gcm_tag_ok", 0), dict(verdicts)
    assert verdicts[False] == item.get("ciphered_failed", 0), dict(verdicts)
    titles = {end: title.upper() for end, title in (item.get("system_titles") or {}).items()}
    for rec in found:
        sec = rec.security()
        where = (name, rec.number, rec.apdu, rec.frames)
        if not sec["authenticated"]:
            assert sec["tag_verified"] is None, where  # encryption only: no tag on the wire
        assert sec["key_kind"] == "global-unicast", where
        assert sec["key_name"], where
        assert sec["system_title"] == titles[_sender(rec)], where
        assert rec.plaintext(), where
        inner = rec.inner()
        assert inner is not None, where
        assert not [f for f in rec.all_findings() if f.severity == "error"
                    and f.code.startswith(("malformed.", "security."))], \
            (where, rec.all_findings())


@pytest.mark.parametrize("name", CAPTURES)
def test_sample_decryptions_byte_for_byte(name: str) -> None:
    item = _item(name)
    by_bytes = {bytes(r.packet.original).hex(): r for r in _records(name)}
    for sample in item.get("sample_decryptions", []):
        rec = by_bytes.get(sample["apdu_hex"].lower())
        assert rec is not None, (name, sample["apdu_hex"][:40])
        sec = rec.security()
        assert sec["control"] == int(sample["security_control"], 16)
        assert sec["invocation_counter"] == int(sample["invocation_counter"], 16)
        assert sec["system_title"] == sample["system_title"].upper()
        assert sec["tag_verified"] is sample["gcm_tag_ok"], (name, rec.number, sec)
        assert rec.plaintext().hex() == sample["plaintext_hex"].lower(), (name, rec.number)


@pytest.mark.parametrize("name", CAPTURES)
def test_tag_zero_apdus_are_flagged_and_decipher(name: str) -> None:
    """The manifest: "2 ciphered access-request/response (0xD9/0xDA) are sent with a
    non-standard outer tag 0x00 (len, SC, IC, ct[, tag]) - decrypt with client/server ST"."""
    item = _item(name)
    odd = [r for r in _records(name) if _tag_zero(r)]
    assert len(odd) == item["apdu_first_byte_counts"].get("00", 0)
    titles = {end: title.upper() for end, title in (item.get("system_titles") or {}).items()}
    for rec in odd:
        where = (name, rec.number, [(f.severity, f.code) for f in rec.all_findings()])
        assert [f for f in rec.all_findings() if f.code.startswith("apdu.")], where
        sec = rec.security()
        assert sec is not None and sec["encrypted"], where
        assert sec["system_title"] == titles[_sender(rec)], where
        assert sec["tag_verified"] is (True if sec["authenticated"] else None), where
        want = "access-request" if rec.direction == "client->server" else "access-response"
        assert getattr(rec.inner(), "apdu_name", None) == want, where


@pytest.mark.parametrize("name", CAPTURES)
def test_only_documented_errors(name: str) -> None:
    """Errors are only what the traffic really has: GuruxDLMS writes the RLRE BER lengths one
    short (as in test_interop.py)."""
    for rec in _records(name):
        for f in rec.all_findings():
            if f.severity != "error":
                continue
            if rec.apdu == "rlre" and f.code == "acse.bad-length":
                continue
            pytest.fail(f"{name} APDU {rec.number} ({rec.apdu}): {f}")


@pytest.mark.parametrize("name", CAPTURES)
def test_no_replay_warning_where_each_sender_counts_up(name: str) -> None:
    """Each side's invocation counters rise in these captures, so no APDU is a replay. (In the
    Simple-Key capture client and server share one system title, each with its own counter.)"""
    last: dict[str, int] = {}
    for rec in _ciphered(_records(name)):
        ic = rec.security()["invocation_counter"]
        assert ic > last.get(rec.direction, -1), (name, rec.number)
        last[rec.direction] = ic
    flagged = [(r.number, f.message) for r in _records(name) for f in r.all_findings()
               if f.code == "security.ic-not-increasing"]
    assert not flagged, (name, len(flagged), flagged[:3])


def test_all_captures_give_1065_ciphered_apdus() -> None:
    if not CAPTURES:
        corpus_path("htanwar922_Output-Ciphered.pcap")
    standard = {name: tuple(r for r in _records(name) if not _tag_zero(r)) for name in CAPTURES}
    total = sum(len(_ciphered(records)) for records in standard.values())
    assert total == TOTAL_CIPHERED
    verified = sum(1 for records in standard.values() for r in _ciphered(records)
                   if r.security()["tag_verified"] is True)
    assert verified == sum(_item(n).get("ciphered_gcm_tag_ok", 0) for n in CAPTURES)
