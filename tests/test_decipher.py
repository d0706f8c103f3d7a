"""Deciphering through the layers and the key context: published vectors, wrong keys, building
ciphered APDUs, broadcast, wrapped keys, key_transfer."""

from __future__ import annotations

import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw

from dissector.cli.main import main
from keys.context import KeyContext, encipher
from keys.keystore import Keystore, MeterKeys, keystore_from_flags
from keys.wrap import build_key_transfer, wrap_key
from layers.apdu import APDU
from layers.expert import findings_of

EK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
GET = bytes.fromhex("C0010000080000010000FF0200")  # get-request clock.time, notes §5.4


def _ctx(ek: bytes = EK, ak: bytes | None = AK, **titles: bytes) -> KeyContext:
    ctx = KeyContext(keystore_from_flags(ek=ek.hex(), ak=ak.hex() if ak else None))
    ctx.association.client_title = titles.get("client")
    ctx.association.server_title = titles.get("server")
    return ctx


def test_every_ciphered_vector_deciphers_through_the_layers(vectors: list[dict]) -> None:
    done = 0
    for v in vectors:
        if v["kind"] != "ciphered_apdu" or v.get("ciphered_apdu_hex", "")[:2] in ("",):
            continue
        apdu = bytes.fromhex(v["ciphered_apdu_hex"])
        title = bytes.fromhex(v["system_title"])
        ak = bytes.fromhex(v["ak_hex"]) if v.get("ak_hex") else None
        ctx = _ctx(bytes.fromhex(v["key_hex"]), ak, client=title, server=title)
        if v.get("dedicated_key") and apdu[0] in (0xD0, 0xD4):
            ctx.keystore = Keystore([MeterKeys("v", dedicated=bytes.fromhex(v["dedicated_key"]),
                                               ak=ak)])
        if apdu[0] in (0xD0, 0xD4) and not v.get("dedicated_key"):
            ctx.keystore = Keystore([MeterKeys("v", dedicated=bytes.fromhex(v["key_hex"]),
                                               ak=ak)])
        pkt = APDU(apdu, key_context=ctx)
        assert raw(pkt) == apdu, v["name"]
        res = pkt.deciphered
        assert res is not None and res.plaintext is not None, (v["name"], findings_of(pkt))
        assert res.plaintext.hex().upper() == v["plaintext_hex"].upper(), v["name"]
        assert res.tag_verified is (True if v["security_control"] != "20" and
                                    int(v["security_control"], 16) & 0x10 else None), v["name"]
        done += 1
    assert done >= 13


def test_wrong_key_is_a_finding_not_an_exception() -> None:
    apdu = encipher(GET, "glo-get-request", key=EK, ak=AK, system_title=b"CLIENT01",
                    invocation_counter=7)
    ctx = _ctx(bytes(16), AK, client=b"CLIENT01")
    pkt = APDU(raw(apdu), key_context=ctx)
    assert pkt.deciphered.tag_verified is False
    assert pkt.deciphered.plaintext is None
    assert "security.tag-failed" in [f.code for f in findings_of(pkt)]


def test_wrong_ak_but_right_ek_is_named() -> None:
    apdu = encipher(GET, "glo-get-request", key=EK, ak=AK, system_title=b"CLIENT01",
                    invocation_counter=7)
    pkt = APDU(raw(apdu), key_context=_ctx(EK, bytes(16), client=b"CLIENT01"))
    assert pkt.deciphered.tag_verified is False
    assert pkt.deciphered.plaintext == GET
    found = [f for f in findings_of(pkt) if f.code == "security.tag-failed-ak-wrong"]
    assert found and "AK or the AAD is wrong" in found[0].message


def test_ded_tag_that_verifies_with_the_global_key_is_flagged() -> None:
    apdu = encipher(GET, "ded-get-request", key=EK, ak=AK, system_title=b"CLIENT01",
                    invocation_counter=9)
    ctx = _ctx(client=b"CLIENT01")
    pkt = APDU(raw(apdu), key_context=ctx)
    assert pkt.deciphered.tag_verified is True
    assert "security.wrong-key-family" in [f.code for f in findings_of(pkt)]


def test_broadcast_uses_the_broadcast_key() -> None:
    bek = bytes(range(16, 32))
    apdu = encipher(GET, "glo-get-request", key=bek, ak=AK, system_title=b"CLIENT01",
                    invocation_counter=3, security_control=0x70)
    ctx = KeyContext(keystore_from_flags(ek=EK.hex(), ak=AK.hex(), bek=bek.hex()))
    ctx.association.client_title = b"CLIENT01"
    pkt = APDU(raw(apdu), key_context=ctx)
    assert pkt.deciphered.tag_verified is True
    assert pkt.deciphered.key_kind == "global-broadcast"
    assert pkt.deciphered.key_name == "cli/bek"


@settings(max_examples=60, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), ak=st.binary(min_size=16, max_size=16),
       title=st.binary(min_size=8, max_size=8), ic=st.integers(0, 2**32 - 1),
       sc=st.sampled_from([0x10, 0x20, 0x30]),
       envelope=st.sampled_from(["glo-get-request", "ded-get-request", "general-glo-ciphering",
                                 "general-ded-ciphering"]))
def test_built_envelopes_decipher_back(key: bytes, ak: bytes, title: bytes, ic: int, sc: int,
                                       envelope: str) -> None:
    pkt = encipher(GET, envelope, key=key, ak=ak, system_title=title, invocation_counter=ic,
                   security_control=sc)
    wire = raw(pkt)
    store = Keystore([MeterKeys("m", ek=key, dedicated=key, ak=ak)])
    ctx = KeyContext(store)
    ctx.association.client_title = title
    back = APDU(wire, key_context=ctx)
    assert raw(back) == wire
    assert back.deciphered.plaintext == GET
    assert back.deciphered.tag_verified is (True if sc & 0x10 else None)


def test_general_ciphering_with_a_wrapped_key() -> None:
    from keys.gcm import protect
    from layers.apdu.ciphered import CipheredContent, GeneralCiphering, KeyInfo

    kek, content_key = bytes(range(32, 48)), bytes(range(48, 64))
    payload = protect(0x30, content_key, AK, b"ORIGINAT", 11, GET)
    pkt = GeneralCiphering(
        transaction_id=bytes(8), originator_system_title=b"ORIGINAT",
        recipient_system_title=b"RECIPIEN", key_info_present=1,
        key_info=KeyInfo(key_info_choice=1, kek_id=0,
                         key_ciphered_data=wrap_key(kek, content_key)),
        ciphered_content=CipheredContent(security_control=0x30, invocation_counter=11,
                                         information=payload[:-12],
                                         authentication_tag=payload[-12:]))
    ctx = KeyContext(Keystore([MeterKeys("m", kek=kek, ak=AK)]))
    back = APDU(raw(pkt), key_context=ctx)
    assert back.deciphered.plaintext == GET
    assert back.deciphered.key_kind == "wrapped" and back.deciphered.tag_verified is True


def _decode_json(lines: list[str], *flags: str) -> list[dict]:
    out = io.StringIO()
    assert main(["decode", "--json", *flags, *lines], out) == 0
    return [json.loads(x) for x in out.getvalue().splitlines() if '"apdu"' in x]


def test_key_transfer_is_followed() -> None:
    """Security setup key_transfer (class 64 method 2): the new global key is unwrapped with the
    KEK and used from the APDU after the server's success answer (notes §8)."""
    kek, new_ek = bytes(range(64, 80)), bytes(range(80, 96))
    client, server = b"CLIENT01", b"SERVER01"
    param = build_key_transfer([(0, wrap_key(kek, new_ek))])
    request = bytes.fromhex("C301C10040") + bytes.fromhex("00002B0000FF") + b"\x02\x01" + param
    response = bytes.fromhex("C701C10000")
    lines = [raw(encipher(request, "glo-action-request", key=EK, ak=AK, system_title=client,
                          invocation_counter=1)).hex(),
             raw(encipher(response, "glo-action-response", key=EK, ak=AK,
                          system_title=server, invocation_counter=1)).hex(),
             raw(encipher(GET, "glo-get-request", key=new_ek, ak=AK, system_title=client,
                          invocation_counter=2)).hex()]
    rows = _decode_json(lines, "--ek", EK.hex(), "--ak", AK.hex(), "--kek", kek.hex(),
                        "--client-title", client.hex(), "--server-title", server.hex())
    assert [r["inner"] for r in rows] == ["action-request", "action-response", "get-request"]
    assert "keys.transfer" in [f["code"] for f in rows[0]["expert"]]
    assert "keys.transfer-applied" in [f["code"] for f in rows[1]["expert"]]
    assert rows[2]["security"]["tag_verified"] is True
    assert "transferred" in rows[2]["security"]["key_name"]


def test_compressed_plaintext_is_not_dissected() -> None:
    """SC bit 7 (compression, Green Book security control byte): the tag verifies, the key is
    named, and the plaintext (V.44, not supported) is kept as bytes, not read as an APDU."""
    apdu = encipher(GET, "glo-get-request", key=EK, ak=AK, system_title=b"CLIENT01",
                    invocation_counter=9, security_control=0xB0)
    ctx = _ctx(client=b"CLIENT01")
    pkt = APDU(raw(apdu), key_context=ctx)
    res = pkt.deciphered
    assert res.tag_verified is True and res.key_name == "cli/ek"
    assert res.plaintext == GET and res.packet is None
    assert "security.compressed" in [f.code for f in findings_of(pkt)]
