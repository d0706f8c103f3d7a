"""keys.gcm against the published vectors, the shared corpus and random round trips."""

from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from keys.gcm import (
    CipherInputError,
    Opening,
    SecurityControl,
    TagMismatch,
    keystream_decrypt,
    parse_security_header,
    protect,
    unprotect,
)
from layers.apdu.base import CIPHERED_TAGS
from layers.fields import decode_length, encode_length

GLO_DED_TAGS = {t for pair in CIPHERED_TAGS.values() for t in pair}
GENERAL_TAGS = {0xDB, 0xDC}
ACSE_TAGS = {0x60, 0x61, 0x62, 0x63}
HEX_KEY = re.compile(r"\b([0-9A-Fa-f]{64}|[0-9A-Fa-f]{32})\b")


def split_envelope(apdu: bytes) -> tuple[int, bytes | None, int, int, bytes]:
    """(tag, carried system title, SC, IC, payload) of a glo-/ded- or DB/DC APDU."""
    tag, pos, title = apdu[0], 1, None
    if tag in GENERAL_TAGS:
        n, used = decode_length(apdu[pos:])
        title = apdu[pos + used:pos + used + n]
        pos += used + n
    n, used = decode_length(apdu[pos:])
    content = apdu[pos + used:]
    assert len(content) == n, "length prefix disagrees with the APDU size"
    return tag, title, content[0], int.from_bytes(content[1:5], "big"), content[5:]


def ber_fields(acse: bytes) -> dict[int, bytes]:
    """Top-level BER fields (tag -> value) of an AARQ/AARE/RLRQ/RLRE."""
    n, used = decode_length(acse[1:])
    body, out = acse[1 + used:1 + used + n], {}
    while body:
        ln, u = decode_length(body[1:])
        out[body[0]] = body[1 + u:1 + u + ln]
        body = body[1 + u + ln:]
    return out


def user_information(acse: bytes) -> bytes:
    """The xDLMS APDU inside an ACSE APDU's user-information (BE 04 len ...)."""
    inner = ber_fields(acse)[0xBE]
    assert inner[0] == 0x04
    n, used = decode_length(inner[1:])
    return inner[1 + used:1 + used + n]


def hex_key(text: str | None) -> bytes | None:
    """The hex key in a manifest key field such as ``MYDUMMYGLOBALKEY (ascii) = 4d59...``."""
    if not text:
        return None
    m = HEX_KEY.search(text.split("=")[-1]) or HEX_KEY.search(text)
    return bytes.fromhex(m.group(1)) if m else None


def b(hexstr: str) -> bytes:
    return bytes.fromhex(hexstr)


# --- published vectors ---------------------------------------------------------------------

def test_every_ciphered_vector_decrypts_and_reprotects(vectors: list[dict]) -> None:
    done = 0
    for v in vectors:
        if v["kind"] != "ciphered_apdu":
            continue
        apdu = b(v["ciphered_apdu_hex"])
        tag, carried, sc, ic, payload = split_envelope(apdu)
        assert tag in GLO_DED_TAGS | GENERAL_TAGS, v["name"]
        assert sc == int(v["security_control"], 16), v["name"]
        assert ic == int(v["invocation_counter"], 16), v["name"]
        title = b(v["system_title"])
        if carried is not None:
            assert carried == title, v["name"]
        key, ak = b(v["key_hex"]), (b(v["ak_hex"]) if v["ak_hex"] else None)
        plaintext = b(v["plaintext_hex"])
        assert unprotect(sc, key, ak, title, ic, payload) == plaintext, v["name"]
        opening = Opening(sc, title, ic, payload)
        assert opening.verify(key, ak) == plaintext, v["name"]
        assert opening.first_byte(key) == (plaintext[0] if sc & 0x20 else None), v["name"]
        if ak is not None and sc & 0x10:
            assert opening.verify(key, bytes(16)) is None, v["name"]
        again = protect(sc, key, ak, title, ic, plaintext)
        header = bytes([tag]) + (encode_length(len(carried)) + carried if carried is not None
                                 else b"")
        content = bytes([sc]) + ic.to_bytes(4, "big") + again
        assert header + encode_length(len(content)) + content == apdu, v["name"]
        if v.get("tag"):
            assert payload[-12:] == b(v["tag"]), v["name"]
        if v.get("aad"):
            expected = bytes([sc]) + ak + (plaintext if sc & 0x30 == 0x10 else b"")
            assert b(v["aad"]) == expected, v["name"]
        done += 1
    assert done == sum(v["kind"] == "ciphered_apdu" for v in vectors) >= 14


def test_sixteen_byte_printed_tag_is_the_dlms_tag_prefix(vectors: list[dict]) -> None:
    found = 0
    for v in vectors:
        m = re.search(r"16-byte tag ([0-9a-fA-F]{32})", v["source"] + " " + v.get("note", ""))
        if not m:
            continue
        _, _, sc, ic, payload = split_envelope(b(v["ciphered_apdu_hex"]))
        iv = b(v["system_title"]) + ic.to_bytes(4, "big")
        full = AESGCM(b(v["key_hex"])).encrypt(iv, b(v["plaintext_hex"]),
                                               bytes([sc]) + b(v["ak_hex"]))
        assert full[-16:] == b(m.group(1))
        assert payload[-12:] == b(m.group(1))[:12]
        found += 1
    assert found == 1


def test_broadcast_vector_and_the_masked_sc_variant(vectors: list[dict]) -> None:
    (v,) = [v for v in vectors if v.get("alt_apdu_if_aad_uses_SC_masked_0x30")]
    key, ak, title = b(v["key_hex"]), b(v["ak_hex"]), b(v["system_title"])
    plaintext = b(v["plaintext_hex"])
    _, _, sc, ic, payload = split_envelope(b(v["ciphered_apdu_hex"]))
    _, _, alt_sc, alt_ic, alt_payload = split_envelope(b(v["alt_apdu_if_aad_uses_SC_masked_0x30"]))
    assert SecurityControl(sc).broadcast and alt_sc == sc and alt_ic == ic
    assert unprotect(sc, key, ak, title, ic, payload) == plaintext
    with pytest.raises(TagMismatch):
        unprotect(sc, key, ak, title, ic, alt_payload)
    assert unprotect(sc, key, ak, title, ic, alt_payload, aad_sc=sc & 0x30) == plaintext
    assert protect(sc, key, ak, title, ic, plaintext, aad_sc=sc & 0x30) == alt_payload
    with pytest.raises(TagMismatch):
        unprotect(sc, key, ak, title, ic, payload, aad_sc=sc & 0x30)


def test_acse_vectors_carry_the_ciphered_apdu(vectors: list[dict]) -> None:
    seen = 0
    for v in vectors:
        for field in ("full_aarq_hex", "full_rlre_hex"):
            if v.get(field):
                assert user_information(b(v[field])) == b(v["ciphered_apdu_hex"])
                seen += 1
        if v.get("dedicated_key"):
            # InitiateRequest: tag 01, dedicated-key present (01), length 16, key.
            assert b(v["plaintext_hex"])[:3] == b"\x01\x01\x10"
            assert b(v["plaintext_hex"])[3:19] == b(v["dedicated_key"])
    assert seen == 2


# --- shared corpus -------------------------------------------------------------------------

def _manifest_cases(manifest: dict) -> list[tuple[str, bytes, bytes, bytes, bytes, bytes]]:
    """(label, apdu, system title, EK, AK, plaintext) of every keyed gcm-tag APDU that is a
    plain glo-/ded-/DB form, or an ACSE APDU whose user-information is one."""
    cases = []
    for item in manifest["items"]:
        if item.get("verification_level") != "gcm-tag" or not item.get("keys"):
            continue
        keys = item["keys"]
        ek = hex_key(keys.get("EK") or keys.get("GUEK"))
        ak = hex_key(keys.get("AK") or keys.get("GAK"))
        records = []
        for frame in item.get("frames") or []:
            raw = b(frame["hex"])
            if raw[:2] == b"\x00\x01" and int.from_bytes(raw[6:8], "big") == len(raw) - 8:
                raw = raw[8:]  # IEC 62056-47 wrapper header
            records.append((raw, frame.get("system_title"), frame.get("plaintext_hex")))
        for sample in item.get("sample_decryptions") or []:
            records.append((b(sample["apdu_hex"]), sample.get("system_title"),
                            sample.get("plaintext_hex")))
        if not records and item.get("plaintext_hex"):
            apdu = b(item.get("apdu_hex") or item["hex"])
            records.append((apdu, item.get("system_title"), item["plaintext_hex"]))
        for apdu, title, plaintext in records:
            if apdu[0] in ACSE_TAGS:
                apdu = user_information(apdu)
            if apdu[0] not in GLO_DED_TAGS | GENERAL_TAGS or not title or not plaintext:
                continue
            assert ek and ak, item["id"]
            cases.append((item["id"], apdu, b(title), ek, ak, b(plaintext)))
    return cases


def test_manifest_gcm_tag_items_verify(manifest: dict) -> None:
    cases = _manifest_cases(manifest)
    assert len({c[0] for c in cases}) >= 10 and len(cases) >= 40
    for label, apdu, title, ek, ak, plaintext in cases:
        _, carried, sc, ic, payload = split_envelope(apdu)
        if carried:
            assert carried == title, label
        assert unprotect(sc, ek, ak, title, ic, payload) == plaintext, label


def _dsmr_crc(data: bytes) -> int:
    """CRC-16/ARC (reflected poly 0xA001, init 0), the DSMR P1 telegram checksum."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def test_manifest_item_with_wrong_published_ak(manifest: dict) -> None:
    (item,) = [i for i in manifest["items"]
               if i.get("verification_level") == "inner-CRC-match (tag failed)"]
    ek, ak = hex_key(item["keys"]["GUEK"]), hex_key(item["keys"]["GAK"])
    assert ek and ak
    _, title, sc, ic, payload = split_envelope(b(item["hex"]))
    assert title == b(item["system_title"])
    with pytest.raises(TagMismatch):
        unprotect(sc, ek, ak, title, ic, payload)
    plaintext = keystream_decrypt(sc, ek, title, ic, payload)
    assert plaintext == b(item["plaintext_hex"])
    # The telegram's own checksum (after '!') proves the decryption independently of the tag.
    bang = plaintext.index(b"!")
    assert _dsmr_crc(plaintext[:bang + 1]) == int(plaintext[bang + 1:bang + 5], 16)


# --- properties ----------------------------------------------------------------------------

@st.composite
def protection_inputs(draw: st.DrawFn) -> dict:
    suite = draw(st.sampled_from([0, 1, 2]))
    size = 32 if suite == 2 else 16
    sc = draw(st.sampled_from([0x10, 0x20, 0x30])) | suite | draw(st.sampled_from([0, 0x40]))
    return {
        "sc": sc,
        "key": draw(st.binary(min_size=size, max_size=size)),
        "ak": draw(st.binary(min_size=size, max_size=size)),
        "system_title": draw(st.binary(min_size=8, max_size=8)),
        "ic": draw(st.integers(0, 0xFFFFFFFF)),
        "plaintext": draw(st.binary(max_size=300)),
    }


@settings(max_examples=300, deadline=None)
@given(protection_inputs(), st.integers(0, 10**6), st.sampled_from(["key", "ak", "payload"]))
def test_protect_unprotect_round_trip(inp: dict, where: int, spoil: str) -> None:
    sc = inp["sc"]
    payload = protect(**inp)
    tagged = bool(sc & 0x10)
    assert len(payload) == len(inp["plaintext"]) + (12 if tagged else 0)
    args = {k: inp[k] for k in ("sc", "key", "ak", "system_title", "ic")}
    assert unprotect(**args, payload=payload) == inp["plaintext"]
    if sc & 0x20:
        assert keystream_decrypt(sc, inp["key"], inp["system_title"], inp["ic"],
                                 payload) == inp["plaintext"]
    if spoil == "payload":
        if not payload:
            return
        bad = bytearray(payload)
        bad[where % len(bad)] ^= 1 << (where % 8)
        args["payload"] = bytes(bad)
    else:
        value = bytearray(args[spoil])
        value[where % len(value)] ^= 1 << (where % 8)
        args[spoil] = bytes(value)
        args["payload"] = payload
    if tagged:
        with pytest.raises(TagMismatch):
            unprotect(**args)
    elif spoil != "ak" and len(inp["plaintext"]) >= 8:
        # no tag: no error, other bytes (a shorter plaintext may come out the same by chance)
        out = unprotect(**args)
        assert out != inp["plaintext"]


@given(protection_inputs())
def test_unknown_ak_still_deciphers(inp: dict) -> None:
    payload = protect(**inp)
    plain = keystream_decrypt(inp["sc"], inp["key"], inp["system_title"], inp["ic"], payload)
    assert plain == inp["plaintext"]


# --- security control and input errors -----------------------------------------------------

@pytest.mark.parametrize(("sc", "text", "suite", "flags"), [
    (0x10, "SC=10 auth suite0", 0, (True, False, False, False)),
    (0x20, "SC=20 enc suite0", 0, (False, True, False, False)),
    (0x30, "SC=30 auth+enc suite0", 0, (True, True, False, False)),
    (0x21, "SC=21 enc suite1", 1, (False, True, False, False)),
    (0x32, "SC=32 auth+enc suite2", 2, (True, True, False, False)),
    (0x70, "SC=70 auth+enc broadcast suite0", 0, (True, True, True, False)),
    (0xB0, "SC=B0 auth+enc compressed suite0", 0, (True, True, False, True)),
])
def test_security_control(sc: int, text: str, suite: int, flags: tuple[bool, ...]) -> None:
    c = SecurityControl(sc)
    assert c.describe() == text
    assert c.suite == suite and int(c) == sc
    assert (c.authenticated, c.encrypted, c.broadcast, c.compressed) == flags
    assert c.key_length == (32 if suite == 2 else 16)


def test_parse_security_header() -> None:
    sc, ic, payload = parse_security_header(b("3001234567AABB"))
    assert (sc.value, ic, payload) == (0x30, 0x01234567, b"\xaa\xbb")
    with pytest.raises(CipherInputError):
        parse_security_header(b"\x30\x00")


def test_input_errors_never_show_key_bytes() -> None:
    key, ak, title = bytes(range(16)), bytes(range(16, 32)), b"ABCDEFGH"
    bad_calls = [
        lambda: unprotect(0x32, key, ak, title, 1, bytes(20)),      # suite 2 needs 32 bytes
        lambda: unprotect(0x30, key + key, ak, title, 1, bytes(20)),
        lambda: unprotect(0x33, key, ak, title, 1, bytes(20)),      # reserved suite
        lambda: unprotect(0x30, key, ak, title[:7], 1, bytes(20)),
        lambda: unprotect(0x30, key, ak, title, 1, bytes(11)),      # shorter than the tag
        lambda: unprotect(0x30, key, None, title, 1, bytes(20)),    # AK needed
        lambda: protect(0x10, key, None, title, 1, b"x"),
        lambda: protect(0x30, key, ak, title, 1 << 32, b"x"),
    ]
    for call in bad_calls:
        with pytest.raises(CipherInputError) as info:
            call()
        text = str(info.value).lower()
        assert key.hex() not in text and ak.hex() not in text
    with pytest.raises(TagMismatch) as info:
        unprotect(0x30, key, ak, title, 1, bytes(20))
    assert key.hex() not in str(info.value).lower()


def test_no_protection_passes_through() -> None:
    key, title = bytes(16), bytes(8)
    assert protect(0x00, key, None, title, 5, b"abc") == b"abc"
    assert unprotect(0x00, key, None, title, 5, b"abc") == b"abc"
