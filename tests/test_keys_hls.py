"""keys.hls: published HLS-GMAC vectors, Gurux client/server traffic and the other mechanisms."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keys.hls import HlsInputError, compute_hls, verify_hls
from keys.secret import SecretKey
from layers.fields import decode_length

GB_EK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
GB_AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")


def b(hexstr: str) -> bytes:
    return bytes.fromhex(hexstr)


def test_hls5_vectors(vectors: list[dict]) -> None:
    entries = [v for v in vectors if v["kind"] == "hls5_f_output"]
    assert len(entries) == 2
    for v in entries:
        key, ak, title = b(v["key_hex"]), b(v["ak_hex"]), b(v["system_title"])
        challenge, f = b(v["plaintext_hex"]), b(v["ciphered_apdu_hex"])
        ic, sc = int(v["invocation_counter"], 16), int(v["security_control"], 16)
        assert compute_hls(5, challenge, ek=key, ak=ak, system_title=title, ic=ic, sc=sc) == f
        assert verify_hls(5, f, challenge, ek=key, ak=ak, system_title=title) is True
        # The published AAD and the GMAC definition, straight from cryptography.
        assert b(v["aad"]) == bytes([sc]) + ak + challenge
        iv = title + ic.to_bytes(4, "big")
        assert AESGCM(key).encrypt(iv, b"", b(v["aad"]))[:12] == f[5:]
        spoiled = f[:-1] + bytes([f[-1] ^ 1])
        assert verify_hls(5, spoiled, challenge, ek=key, ak=ak, system_title=title) is False
        assert verify_hls(5, f, challenge, ek=key, ak=None, system_title=title) is None
        assert verify_hls(5, f, challenge, ek=key, ak=ak, system_title=None) is None


def test_hls5_manifest_item(manifest: dict) -> None:
    (item,) = [i for i in manifest["items"] if i["id"] == "item004"]
    f = b(item["hex"])
    challenge = b(item["description"].split("StoC=")[1].split(",")[0])
    assert verify_hls(5, f, challenge, ek=b(item["keys"]["EK"]), ak=b(item["keys"]["AK"]),
                      system_title=b(item["system_title"])) is True
    assert f[5:] == b(item["computed_tag"])


def test_gb_f_stoc_is_what_the_synthetic_pass3_carries(vectors: list[dict]) -> None:
    (f_stoc,) = [v for v in vectors if v["name"].startswith("GB HLS-5 (GMAC) pass 3")]
    carriers = [v for v in vectors if "pass 3" in v["name"] and v["kind"] == "ciphered_apdu"]
    assert carriers
    for v in carriers:
        assert b(v["plaintext_hex"]).endswith(b"\x09\x11" + b(f_stoc["ciphered_apdu_hex"]))


# --- Gurux client <-> server traffic from the shared corpus ------------------------------

def _acse_field(acse: bytes, tag: int) -> bytes:
    n, used = decode_length(acse[1:])
    body = acse[1 + used:1 + used + n]
    while body:
        ln, u = decode_length(body[1:])
        if body[0] == tag:
            return body[1 + u:1 + u + ln]
        body = body[1 + u + ln:]
    raise KeyError(hex(tag))


def _auth_value(acse: bytes, tag: int) -> bytes:
    """calling- (AC) / responding- (AA) authentication-value: [0] IMPLICIT charstring."""
    inner = _acse_field(acse, tag)
    assert inner[0] == 0x80
    n, used = decode_length(inner[1:])
    return inner[1 + used:1 + used + n]


def _ap_title(acse: bytes, tag: int) -> bytes:
    """calling- (A6) / responding- (A4) AP-title: an OCTET STRING holding the system title."""
    inner = _acse_field(acse, tag)
    assert inner[0] == 0x04 and inner[1] == len(inner) - 2
    return inner[2:]


def _trailing_octet_string(plaintext: bytes) -> bytes:
    """The octet-string parameter/result that ends an action-request/-response."""
    for i in range(len(plaintext) - 2, -1, -1):
        if plaintext[i] == 0x09 and plaintext[i + 1] == len(plaintext) - i - 2:
            return plaintext[i + 2:]
    raise ValueError("no trailing octet-string")


def _hls_exchange(item: dict) -> dict[str, bytes]:
    by_kind = {s["ciphered_kind"]: s for s in item["sample_decryptions"]}
    aarq = b(by_kind["glo-initiate-request"]["apdu_hex"])
    aare = b(by_kind["glo-initiate-response"]["apdu_hex"])
    return {
        "mechanism": _acse_field(aarq, 0x8B)[-1:],
        "client_title": _ap_title(aarq, 0xA6),
        "server_title": _ap_title(aare, 0xA4),
        "ctos": _auth_value(aarq, 0xAC),
        "stoc": _auth_value(aare, 0xAA),
        "f_stoc": _trailing_octet_string(b(by_kind["glo-action-request"]["plaintext_hex"])),
        "f_ctos": _trailing_octet_string(b(by_kind["glo-action-response"]["plaintext_hex"])),
    }


def test_gurux_traffic_hls_gmac(manifest: dict) -> None:
    (item,) = [i for i in manifest["items"] if i["id"] == "item057"]
    x = _hls_exchange(item)
    assert x["mechanism"] == b"\x05"
    keys = {"ek": b(item["keys"]["EK"]), "ak": b(item["keys"]["AK"])}
    assert verify_hls(5, x["f_stoc"], x["stoc"], system_title=x["client_title"], **keys)
    assert verify_hls(5, x["f_ctos"], x["ctos"], system_title=x["server_title"], **keys)
    # Each side's title matters: the client's answer does not verify under the server title.
    assert verify_hls(5, x["f_stoc"], x["stoc"], system_title=x["server_title"], **keys) is False


def test_gurux_traffic_hls_mechanism_2(manifest: dict) -> None:
    (item,) = [i for i in manifest["items"] if i["id"] == "item058"]
    x = _hls_exchange(item)
    assert x["mechanism"] == b"\x02"
    secret = SecretKey(b"Gurux", "gurux-default-hls-secret")  # Gurux examples' default secret
    assert compute_hls(2, x["stoc"], secret=secret) == x["f_stoc"]
    assert verify_hls(2, x["f_ctos"], x["ctos"], secret=secret) is True
    assert verify_hls(2, x["f_ctos"], x["ctos"], secret=b"Guru") is False
    assert verify_hls(2, x["f_ctos"], x["ctos"]) is None


# --- mechanisms without published vectors: checked against the definitions -------------

CTOS, STOC = b"client-challenge", b"S2C-challenge-16"
ST_C, ST_S = b"CLIENT01", b"SERVER01"


def test_mechanism_2_pads_challenge_and_secret() -> None:
    out = compute_hls(2, b"\x01" * 8, secret=b"abc")
    assert len(out) == 16
    assert out == compute_hls(2, b"\x01" * 8 + bytes(8), secret=b"abc" + bytes(13))
    with pytest.raises(HlsInputError):
        compute_hls(2, STOC, secret=bytes(17))


@pytest.mark.parametrize(("mechanism", "digest"), [(3, hashlib.md5), (4, hashlib.sha1)])
def test_mechanisms_3_and_4(mechanism: int, digest: type) -> None:
    secret = b"s3cr3t"
    expected = digest(STOC + secret).digest()
    assert compute_hls(mechanism, STOC, secret=secret) == expected
    assert verify_hls(mechanism, expected, STOC, secret=secret) is True
    assert verify_hls(mechanism, expected, CTOS, secret=secret) is False


def test_mechanism_6_byte_order() -> None:
    secret = b"secret"
    f_stoc = hashlib.sha256(secret + ST_C + ST_S + STOC + CTOS).digest()   # client, pass 3
    f_ctos = hashlib.sha256(secret + ST_S + ST_C + CTOS + STOC).digest()   # server, pass 4
    assert compute_hls(6, STOC, secret=secret, system_title=ST_C, peer_title=ST_S,
                       own_challenge=CTOS) == f_stoc
    assert verify_hls(6, f_ctos, CTOS, secret=secret, system_title=ST_S, peer_title=ST_C,
                      own_challenge=STOC) is True
    assert verify_hls(6, f_ctos, CTOS, secret=secret, system_title=ST_C, peer_title=ST_S,
                      own_challenge=STOC) is False
    assert verify_hls(6, f_ctos, CTOS, secret=secret, system_title=ST_S, peer_title=ST_C,
                      own_challenge=None) is None


@pytest.mark.parametrize(("curve", "algorithm", "size"), [
    (ec.SECP256R1(), hashes.SHA256(), 32), (ec.SECP384R1(), hashes.SHA384(), 48)])
def test_mechanism_7_ecdsa(curve: ec.EllipticCurve, algorithm: hashes.HashAlgorithm,
                           size: int) -> None:
    client = ec.generate_private_key(curve)
    f_stoc = compute_hls(7, STOC, signing_key=client, system_title=ST_C, peer_title=ST_S,
                         own_challenge=CTOS)
    assert len(f_stoc) == 2 * size
    # The signature covers ST_C || ST_S || StoC || CtoS (notes §7), as raw r || s.
    der = encode_dss_signature(int.from_bytes(f_stoc[:size], "big"),
                               int.from_bytes(f_stoc[size:], "big"))
    client.public_key().verify(der, ST_C + ST_S + STOC + CTOS, ec.ECDSA(algorithm))
    assert verify_hls(7, f_stoc, STOC, public_key=client.public_key(), system_title=ST_C,
                      peer_title=ST_S, own_challenge=CTOS) is True
    assert verify_hls(7, f_stoc, STOC, public_key=client.public_key(), system_title=ST_S,
                      peer_title=ST_C, own_challenge=CTOS) is False
    assert verify_hls(7, f_stoc, STOC, system_title=ST_C, peer_title=ST_S,
                      own_challenge=CTOS) is None


def test_missing_inputs_and_unknown_mechanisms() -> None:
    with pytest.raises(HlsInputError, match="needs secret"):
        compute_hls(3, STOC)
    with pytest.raises(HlsInputError, match="needs ic"):
        compute_hls(5, STOC, ek=GB_EK, ak=GB_AK, system_title=ST_C)
    with pytest.raises(HlsInputError):
        compute_hls(1, STOC, secret=b"x")
    with pytest.raises(HlsInputError):
        verify_hls(8, b"", STOC, secret=b"x")
    assert verify_hls(5, b"\x10" + bytes(10), STOC, ek=GB_EK, ak=GB_AK, system_title=ST_C) is False
