"""The one redaction step: key bytes a record carries in clear once deciphered (the dedicated
key of an initiate-request) are withheld before any writer sees the record.

The key is zeroed where it stands (the decoded field, the plaintext bytes), so every output,
the pcapng export included, shows the APDU's structure without the key, and a note on the
record says what was withheld (length and a short SHA-256 fingerprint, to tell keys apart).
"""

from __future__ import annotations

import hashlib

from dissector.analysis.record import ApduRecord
from layers.expert import Finding
from layers.tree import deciphered_of

KEY_FIELDS = ("dedicated_key",)
MIN_KEY = 8  # shorter values are not keys (and zeroing them would hide nothing)


def withhold_keys(rec: ApduRecord) -> None:
    """Zero the key bytes of the record in place (once; a second call finds nothing)."""
    if rec.fast is not None:  # the fast path reads no APDU that carries a key
        return
    keys: list[bytes] = []
    for node in rec.nodes:
        fields = node.fields
        for name in KEY_FIELDS:
            value = fields.get(name)
            if isinstance(value, (bytes, bytearray)) and len(value) >= MIN_KEY and any(value):
                keys.append(bytes(value))
                fields[name] = bytes(len(value))
                node.raw_packet_cache = None
    if not keys:
        return
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
    for key in keys:
        rec.findings.append(Finding(
            "note", "output.key-withheld",
            f"the dedicated key ({len(key)} bytes, sha256:"
            f"{hashlib.sha256(key).hexdigest()[:8]}) is withheld from the output: shown as"
            " zero bytes"))
