"""The records of the shared corpus, for the tests that hold the fast path against the Packet
path APDU by APDU (`test_fast_decode`, `test_fast_acse`): every capture read with the keys the
corpus publishes for it, every manifest item without a capture, and the seed case. Read in
place (never copied), once per session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from conftest import CORPUS, ROOT, corpus_path

from dissector.analysis.capture import dissect_capture
from dissector.analysis.pipeline import Dissector
from dissector.analysis.record import ApduRecord
from dissector.framing.lines import hex_units
from keys.keystore import Keystore, keystore_from_flags, load_keystore


@cache
def corpus_records() -> tuple[ApduRecord, ...]:
    """Every record, in this order, of the corpus captures (with the EK/AK the manifest gives
    the capture), of the interop scenarios' captures (with their keys.json), of the manifest
    items without a capture (each hex text read as a pasted line, with the item's keys) and of
    the seed case (with its keystore)."""
    manifest = json.loads(corpus_path("manifest.json").read_text())
    return tuple(_records(manifest))


def _records(manifest: dict[str, Any]) -> Iterator[ApduRecord]:
    keys_of: dict[str, dict[str, str]] = {}
    for item in manifest["items"]:
        keys = item.get("keys") or {}
        if item.get("pcap_file") and (keys.get("EK") or keys.get("AK")):
            keys_of.setdefault(item["pcap_file"], keys)
    for path in sorted([*CORPUS.glob("*.pcap"), *CORPUS.glob("*.pcapng")]):
        keys = keys_of.get(path.name, {})
        store = keystore_from_flags(ek=keys.get("EK"), ak=keys.get("AK"))
        yield from dissect_capture(str(path), Dissector(store))
    for scenario in sorted(p for p in (CORPUS / "interop").glob("*") if p.is_dir()):
        store = _interop_store(scenario)
        for path in sorted(scenario.glob("capture.pcap*")):
            yield from dissect_capture(str(path), Dissector(store))
    for item in manifest["items"]:
        keys = item.get("keys") or {}
        store = keystore_from_flags(ek=keys.get("EK") or None, ak=keys.get("AK") or None)
        for text in _hex_texts(item):
            yield from _records_of_line(bytes.fromhex(text), store)
    yield from dissect_capture(str(ROOT / "pcaps" / "seed-case.pcap"),
                               Dissector(load_keystore(ROOT / "pcaps" / "seed-case.keys.toml")))


def _interop_store(scenario: Path) -> Keystore:
    k = json.loads((scenario / "keys.json").read_text())
    return keystore_from_flags(ek=k["ek"], ak=k["ak"], bek=k.get("broadcast_key"),
                               hls_secret=(f"text:{k['hls_secret']}" if k.get("hls_secret")
                                           else None))


def _hex_texts(item: dict[str, Any]) -> list[str]:
    """The hex a manifest item gives (frames, APDUs, plaintext), for an item without capture."""
    if item.get("pcap_file"):
        return []
    out: list[str] = []
    for key in ("hex", "apdu_hex", "plaintext_hex"):
        value = item.get(key)
        out += [value] if isinstance(value, str) else list(value or ())
    return [t for t in out if t]


def _records_of_line(data: bytes, store: Keystore) -> Iterator[ApduRecord]:
    dis = Dissector(store)
    for position, item in enumerate(hex_units([data])):
        dis.position = position
        yield from dis.process(item)
