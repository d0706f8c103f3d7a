"""The one redaction step: key bytes a record carries in clear once deciphered (the dedicated
key of an initiate-request) are withheld before any writer sees the record.

The key is zeroed where it stands (the decoded field, the plaintext bytes), so every output,
the pcapng export included, shows the APDU's structure without the key, and a note on the
record says what was withheld (length and a short SHA-256 fingerprint, to tell keys apart).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from dissector.analysis.record import ApduRecord
from layers.expert import Finding
from layers.tree import deciphered_of

KEY_FIELDS = ("dedicated_key",)
MIN_KEY = 8  # shorter values are not keys (and zeroing them would hide nothing)


def withhold_keys(rec: ApduRecord) -> None:
    """Zero the key bytes of the record in place (once; a second call finds nothing)."""
    keys = _withhold_fast(rec) if rec.fast is not None else []
    if rec.fast is None or rec.built is not None:  # the Packets, where they are built
        keys += [k for k in _withhold_tree(rec) if k not in keys]
    for key in keys:
        rec.findings.append(Finding(
            "note", "output.key-withheld",
            f"the dedicated key ({len(key)} bytes, sha256:"
            f"{hashlib.sha256(key).hexdigest()[:8]}) is withheld from the output: shown as"
            " zero bytes"))


def _withhold_fast(rec: ApduRecord) -> list[bytes]:
    """A fast record's key: the dedicated key of the initiate-request its AARQ/RLRQ
    deciphered (`fastpath` leaves one in clear to the Packets), zeroed in its JSON fields and
    its plaintext. The Packets built later replay that plaintext, so they hold no key."""
    fast = rec.fast
    assert fast is not None
    inner = fast.apdu
    key = getattr(inner, "dedicated_key", None) if fast.acse is not None else None
    if inner is None or not _is_key(key):
        return []
    fast.apdu = replace(inner, text=inner.text.replace(
        f'"dedicated_key": "{key.hex().upper()}"', f'"dedicated_key": "{"00" * len(key)}"'))
    res = fast.envelope.deciphered if fast.envelope is not None else None
    if res is not None and res.plaintext is not None:
        res.plaintext = res.plaintext.replace(key, bytes(len(key)))
    return [key]


def _is_key(value: object) -> bool:
    return isinstance(value, (bytes, bytearray)) and len(value) >= MIN_KEY and any(value)


def _withhold_tree(rec: ApduRecord) -> list[bytes]:
    """The keys in the record's Packets, zeroed in their fields and deciphered plaintexts."""
    keys: list[bytes] = []
    for node in rec.nodes:
        fields = node.fields
        for name in KEY_FIELDS:
            value = fields.get(name)
            if _is_key(value):
                keys.append(bytes(value))
                fields[name] = bytes(len(value))
                node.raw_packet_cache = None
    if not keys:
        return []
    for node in rec.nodes:
        res = deciphered_of(node)
        plain = getattr(res, "plaintext", None)
        if plain is None:
            continue
        for key in keys:
            plain = plain.replace(key, bytes(len(key)))
        if plain != res.plaintext:
            res.plaintext = plain
            if res.packet is not None:
                res.packet.clear_cache()
    return keys
