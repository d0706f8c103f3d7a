"""Encrypted items of ../shared/corpus/manifest.json: each one gets the verdict its
`verification_level` implies, deciphered with the keys the item publishes.

Covered here: every encrypted item whose hex the manifest gives over HDLC, the IEC 62056-47
wrapper (TCP/UDP) or as a bare APDU. The others are covered elsewhere or later:

- pcap items (the htanwar922/wireshark-dlms captures, item056-item060, fields `pcap_file`,
  `dlms_pdus`, ...): tests/test_htanwar.py.
- M-Bus items, not dissected here because the M-Bus link layer is a later issue (listed, not
  skipped at run time; `test_every_encrypted_item_is_covered` keeps this list true):
  item008 (Kaifa MA309, TINETZ, published-plaintext-match),
  item017 (Kaifa MA309, Netz NOe P1, plausible-plaintext),
  item018 (Kaifa, partial),
  item019 (not verified, no key),
  item040 (Sagemcom T210-D, plausible-plaintext),
  item045 (Kaifa, plausible-plaintext),
  item053 (Sagemcom, not verified, no key),
  item078 (Kaifa MA309 EVN, plausible-plaintext),
  item079 (Sagemcom T210-D EVN, plausible-plaintext).

Verdicts by level:
- `gcm-tag`: the tag verifies and the plaintext is the published one.
- `published-plaintext-match` / `plausible-plaintext`: the plaintext is the published one (or,
  where none is published, parses as an APDU with no malformation); no tag checked.
- `inner-CRC-match (tag failed)`: the published AK is wrong, the EK right: the tag fails, a
  `security.tag-failed-ak-wrong` finding says the AK or the AAD is wrong, and the plaintext is
  shown anyway.
- `partial` / `not verified`: no exception; findings instead of crashes.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from conftest import CORPUS, corpus_path

from dissector.analysis.pipeline import Dissector
from dissector.analysis.record import ApduRecord
from dissector.framing.lines import units_from_line
from dissector.output.jsonout import record_json
from keys.keystore import Keystore, keystore_from_flags
from layers.expert import Finding

MBUS_ITEMS = frozenset({"item008", "item017", "item018", "item019", "item040", "item045",
                        "item053", "item078", "item079"})
PCAP_ITEMS = frozenset({"item056", "item057", "item058", "item059", "item060"})

MANIFEST: dict[str, Any] = json.loads((CORPUS / "manifest.json").read_text()) \
    if (CORPUS / "manifest.json").is_file() else {"items": []}
ITEMS: dict[str, dict[str, Any]] = {i["id"]: i for i in MANIFEST["items"]}
ENCRYPTED = sorted(k for k, i in ITEMS.items() if i.get("encrypted"))
HEX_ITEMS = [k for k in ENCRYPTED if k not in MBUS_ITEMS and "pcap_file" not in ITEMS[k]]

LEVELS = {
    "gcm-tag": "gcm",
    "published-plaintext-match": "plain",
    "plausible-plaintext": "plain",
    "inner-CRC-match (tag failed)": "ak-wrong",
    "partial": "robust",
    "not verified": "robust",
}


def _of_level(kind: str) -> list[str]:
    return [k for k in HEX_ITEMS if LEVELS.get(ITEMS[k]["verification_level"]) == kind]


# -- the item's published material ------------------------------------------------------------

_KEY_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{64}|[0-9A-Fa-f]{32})(?![0-9A-Fa-f])")
_ASCII_KEY = re.compile(r"^(\S+) \(ascii\) = ")
#: manifest key names -> keystore fields
_KEY_NAMES = {"EK": "ek", "GUEK": "ek", "AK": "ak", "GAK": "ak"}


def published_key(value: object) -> str | None:
    """Hex of a key as the manifest writes it: plain hex, ``TEXT (ascii) = hex``, ``hex (a
    note)``; None for ``not published`` or no value."""
    if not isinstance(value, str):
        return None
    found = _KEY_HEX.findall(value)
    if not found:
        assert "not published" in value, f"unparsed key value {value!r}"
        return None
    ascii_form = _ASCII_KEY.match(value)
    if ascii_form:  # the two spellings the manifest gives must agree
        assert bytes.fromhex(found[-1]) == ascii_form.group(1).encode("ascii"), value
    return found[-1]


def keystore_for(item: dict[str, Any]) -> Keystore:
    """The item's keys as command-line flags would give them, plus the IV system title where
    the APDU does not carry one (a bare glo-/ded- service APDU)."""
    flags: dict[str, str] = {}
    for name, value in (item.get("keys") or {}).items():
        if name == "key_source":
            continue
        assert name in _KEY_NAMES, f"{item['id']}: unknown key name {name!r}"
        key = published_key(value)
        if key is not None:
            flags[_KEY_NAMES[name]] = key
    kind = item.get("ciphered_kind", "")
    if item["transport"].startswith("raw APDU") and kind.startswith(("glo-", "ded-")) \
            and "initiate" not in kind:
        side = "client_title" if kind.endswith("-request") else "server_title"
        flags[side] = item["system_title"]
    return keystore_from_flags(**flags)


def input_lines(item: dict[str, Any]) -> list[str]:
    """What a user would paste: one line per published frame, else the item's hex."""
    if item.get("frames"):
        return [f["hex"] for f in item["frames"]]
    return [item["hex"]]


def expectations(item: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per ciphered APDU: per-frame values where the item lists frames."""
    fields = ("security_control", "invocation_counter", "system_title", "plaintext_hex",
              "expected_plaintext_hex", "plaintext_kind", "gcm_tag_ok")
    if item.get("frames"):
        return [{f: fr.get(f) for f in fields} for fr in item["frames"]]
    return [{f: item.get(f) for f in fields}]


def dissect(item: dict[str, Any]) -> tuple[list[ApduRecord], list[Finding]]:
    """Every record of the item's input, and what `finish()` reports; each record must also
    serialise (the JSON contract)."""
    dis = Dissector(keystore_for(item))
    records: list[ApduRecord] = []
    for n, line in enumerate(input_lines(item), 1):
        for unit in units_from_line(bytes.fromhex(line), n):
            records.extend(dis.feed(unit))
    tail = dis.finish()
    for rec in records:
        json.dumps(record_json(rec))
    return records, tail


def ciphered(records: list[ApduRecord]) -> list[ApduRecord]:
    out = []
    for rec in records:
        sec = rec.security()
        if sec is not None and (sec["encrypted"] or sec["authenticated"]):
            out.append(rec)
    return out


def _findings(rec: ApduRecord) -> list[tuple[str, str, str]]:
    return [(f.severity, f.code, f.message) for f in rec.all_findings()]


def _inner_name(kind: str | None) -> str | None:
    """Manifest `plaintext_kind` -> the inner APDU's Green Book name."""
    if not kind or "DSMR" in kind:
        return None
    return kind.removeprefix("xDLMS-")


def _check_envelope(item_id: str, rec: ApduRecord, exp: dict[str, Any]) -> None:
    sec = rec.security()
    assert sec["control"] == int(exp["security_control"], 16), (item_id, sec)
    assert sec["invocation_counter"] == int(exp["invocation_counter"], 16), (item_id, sec)
    assert sec["system_title"] == exp["system_title"].upper(), (item_id, sec,
                                                                _findings(rec))
    assert sec["key_kind"] == "global-unicast", (item_id, sec)


def _check_plaintext(item_id: str, rec: ApduRecord, exp: dict[str, Any]) -> None:
    published = exp["plaintext_hex"] or exp["expected_plaintext_hex"]
    plain = rec.plaintext()
    assert plain is not None, (item_id, rec.security(), _findings(rec))
    if published:
        assert plain.hex() == published.lower(), item_id
    inner = rec.inner()
    assert inner is not None, (item_id, _findings(rec))
    want = _inner_name(exp["plaintext_kind"])
    if want is not None:
        assert getattr(inner, "apdu_name", None) == want, item_id
    malformed = [f for f in _findings(rec) if f[0] == "error" and f[1].startswith("malformed.")]
    assert not malformed, (item_id, malformed)


# -- the tests -------------------------------------------------------------------------------

def test_every_encrypted_item_is_covered() -> None:
    """Each encrypted item is tested here, in test_htanwar.py, or listed above as M-Bus."""
    manifest = json.loads(corpus_path("manifest.json").read_text())
    items = {i["id"]: i for i in manifest["items"]}
    encrypted = {k for k, i in items.items() if i.get("encrypted")}
    assert len(encrypted) == manifest["summary"]["encrypted_items"]
    mbus = {k for k in encrypted if items[k]["transport"].startswith("M-Bus")}
    assert mbus == MBUS_ITEMS
    pcaps = {k for k in encrypted if "pcap_file" in items[k]}
    assert pcaps == PCAP_ITEMS
    assert all(items[k]["source_repo"] == "htanwar922/wireshark-dlms" for k in pcaps)
    rest = encrypted - mbus - pcaps
    assert rest == set(HEX_ITEMS)
    for k in rest:
        assert items[k]["verification_level"] in LEVELS, (k, items[k]["verification_level"])
        transport = items[k]["transport"]
        assert transport.startswith(("HDLC", "raw APDU")) or "wrapper" in transport, \
            (k, transport)


@pytest.mark.parametrize("item_id", _of_level("gcm"))
def test_gcm_tag_verifies(item_id: str) -> None:
    item = ITEMS[item_id]
    records, _ = dissect(item)
    found = ciphered(records)
    wanted = expectations(item)
    assert len(found) == len(wanted), (item_id, [r.apdu for r in records])
    for rec, exp in zip(found, wanted, strict=True):
        sec = rec.security()
        assert sec["tag_verified"] is True, (item_id, rec.number, sec, _findings(rec))
        assert sec["key_name"], (item_id, sec)
        _check_envelope(item_id, rec, exp)
        _check_plaintext(item_id, rec, exp)
        assert not [f for f in _findings(rec) if f[0] == "error"], (item_id, _findings(rec))


@pytest.mark.parametrize("item_id", _of_level("plain"))
def test_plaintext_matches_without_tag(item_id: str) -> None:
    item = ITEMS[item_id]
    records, _ = dissect(item)
    found = ciphered(records)
    wanted = expectations(item)
    assert len(found) == len(wanted), (item_id, [r.apdu for r in records])
    for rec, exp in zip(found, wanted, strict=True):
        sec = rec.security()
        # no tag on the wire (SC 0x20/0x21) or no AK published: nothing was verified
        assert sec["tag_verified"] is None, (item_id, rec.number, sec, _findings(rec))
        _check_envelope(item_id, rec, exp)
        _check_plaintext(item_id, rec, exp)
        assert not [f for f in _findings(rec) if f[0] == "error"], (item_id, _findings(rec))


@pytest.mark.parametrize("item_id", _of_level("ak-wrong"))
def test_tag_failed_but_ek_right_says_ak_is_wrong(item_id: str) -> None:
    """The Sagemcom P1 item: the published AK is wrong (the DSMR CRC inside the plaintext
    matches), so the tag fails while the EK deciphers; a good dissector says so and shows it."""
    item = ITEMS[item_id]
    records, _ = dissect(item)
    found = ciphered(records)
    assert len(found) == 1, (item_id, [r.apdu for r in records])
    rec = found[0]
    sec = rec.security()
    assert sec["tag_verified"] is False, (item_id, sec, _findings(rec))
    _check_envelope(item_id, rec, expectations(item)[0])
    ak_wrong = [f for f in rec.all_findings() if f.code == "security.tag-failed-ak-wrong"]
    assert ak_wrong, (item_id, _findings(rec))
    message = ak_wrong[0].message
    assert re.search(r"\bAK\b", message) and re.search(r"\bAAD\b", message) \
        and "wrong" in message, message
    plain = rec.plaintext()
    assert plain is not None, (item_id, _findings(rec))
    assert plain.hex() == item["plaintext_hex"].lower()


@pytest.mark.parametrize("item_id", _of_level("robust"))
def test_partial_or_unverified_gives_findings_not_crashes(item_id: str) -> None:
    item = ITEMS[item_id]
    records, tail = dissect(item)
    assert records, item_id
    findings = [f for rec in records for f in rec.all_findings()] + tail
    assert findings, (item_id, [r.apdu for r in records])
    for rec in ciphered(records):
        assert rec.security()["tag_verified"] is not True, (item_id, rec.security())
