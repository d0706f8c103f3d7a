"""keys.agreement: ECDH, the DLMS KDF layout (notes §4.3), ECDSA raw signatures, key loading."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from keys.agreement import (
    KeyLoadError,
    algorithm_id,
    derive_key,
    ecdh,
    ephemeral_key_signed_data,
    kdf_input,
    load_private_key,
    load_public_key,
    one_pass_dh_key,
    private_key_from_scalar,
    public_key_bytes,
    public_key_from_bytes,
    sign_raw,
    split_agreed_key_data,
    static_unified_key,
    verify_ephemeral_key,
    verify_raw,
)

SUITES = [(1, ec.SECP256R1, hashlib.sha256, 32, 16), (2, ec.SECP384R1, hashlib.sha384, 48, 32)]
ST_O, ST_R = bytes.fromhex("4D4D4D0000BC614E"), bytes.fromhex("4142434445464748")
TXID = bytes.fromhex("0102030405060708")


@pytest.mark.parametrize(("suite", "curve", "digest", "coord", "key_len"), SUITES)
def test_kdf_layout(suite: int, curve: type, digest: type, coord: int, key_len: int) -> None:
    z = bytes(range(coord))
    alg = bytes.fromhex("60857405080300" if suite == 1 else "60857405080301")
    assert algorithm_id(suite) == alg
    one_pass = b"\x00\x00\x00\x01" + z + alg + ST_O + ST_R
    static = b"\x00\x00\x00\x01" + z + alg + ST_O + b"\x08" + TXID + ST_R
    assert kdf_input(suite, z, ST_O, ST_R) == one_pass
    assert kdf_input(suite, z, ST_O, ST_R, TXID) == static
    assert derive_key(suite, z, ST_O, ST_R) == digest(one_pass).digest()[:key_len]
    assert derive_key(suite, z, ST_O, ST_R, TXID) == digest(static).digest()[:key_len]
    assert derive_key(suite, z, ST_O, ST_R, key_length=16) == digest(one_pass).digest()[:16]


def test_kdf_rejects_bad_titles_and_suites() -> None:
    with pytest.raises(ValueError, match="originator system title"):
        kdf_input(1, bytes(32), ST_O[:7], ST_R)
    with pytest.raises(ValueError, match="suite 0"):
        derive_key(0, bytes(32), ST_O, ST_R)


@pytest.mark.parametrize(("suite", "curve", "digest", "coord", "key_len"), SUITES)
def test_agreement_round_trips(suite: int, curve: type, digest: type, coord: int,
                               key_len: int) -> None:
    originator_eph, recipient = ec.generate_private_key(curve()), ec.generate_private_key(curve())
    z = ecdh(originator_eph, recipient.public_key())
    assert len(z) == coord and z == ecdh(recipient, originator_eph.public_key())
    sent = one_pass_dh_key(suite, originator_eph, recipient.public_key(), ST_O, ST_R)
    got = one_pass_dh_key(suite, recipient, originator_eph.public_key(), ST_O, ST_R)
    assert sent == got and len(sent) == key_len
    a, b = ec.generate_private_key(curve()), ec.generate_private_key(curve())
    k1 = static_unified_key(suite, a, b.public_key(), ST_O, ST_R, TXID)
    assert k1 == static_unified_key(suite, b, a.public_key(), ST_O, ST_R, TXID)
    assert k1 != static_unified_key(suite, a, b.public_key(), ST_O, ST_R, TXID[::-1])


def test_ecdh_refuses_mixed_curves() -> None:
    with pytest.raises(ValueError, match="curves differ"):
        ecdh(ec.generate_private_key(ec.SECP256R1()),
             ec.generate_private_key(ec.SECP384R1()).public_key())


@pytest.mark.parametrize(("suite", "curve", "digest", "coord", "key_len"), SUITES)
def test_ecdsa_raw_signatures(suite: int, curve: type, digest: type, coord: int,
                              key_len: int) -> None:
    key = ec.generate_private_key(curve())
    data = b"general-signing content"
    sig = sign_raw(key, data)
    assert len(sig) == 2 * coord
    assert verify_raw(key.public_key(), sig, data)
    assert not verify_raw(key.public_key(), sig, data + b"!")
    assert not verify_raw(key.public_key(), sig[:-1], data)
    assert not verify_raw(ec.generate_private_key(curve()).public_key(), sig, data)
    # A signature made by cryptography itself, converted to r || s here.
    algorithm = hashes.SHA256() if suite == 1 else hashes.SHA384()
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(algorithm)))
    assert verify_raw(key.public_key(), r.to_bytes(coord, "big") + s.to_bytes(coord, "big"),
                      data)


@pytest.mark.parametrize(("suite", "curve", "digest", "coord", "key_len"), SUITES)
def test_ephemeral_key_data(suite: int, curve: type, digest: type, coord: int,
                            key_len: int) -> None:
    signer, eph = ec.generate_private_key(curve()), ec.generate_private_key(curve())
    signed = ephemeral_key_signed_data(0, eph.public_key())
    assert signed[0] == 0 and len(signed) == 1 + 2 * coord
    data = public_key_bytes(eph.public_key()) + sign_raw(signer, signed)
    pub, sig = split_agreed_key_data(suite, data)
    assert public_key_bytes(pub) == public_key_bytes(eph.public_key())
    assert verify_ephemeral_key(signer.public_key(), pub, sig)
    assert not verify_ephemeral_key(signer.public_key(), pub, sig, key_id=1)
    with pytest.raises(KeyLoadError):
        split_agreed_key_data(suite, data[:-1])


def _self_signed(key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "4D4D4D0000BC614E")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_loading_keys(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    (tmp_path / "client.pem").write_bytes(pem)
    (tmp_path / "client.crt").write_bytes(_self_signed(key))
    pub_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    scalar = key.private_numbers().private_value.to_bytes(32, "big").hex()
    want = xy = public_key_bytes(key.public_key())
    for spec in (str(tmp_path / "client.pem"), pem.decode(), scalar):
        assert public_key_bytes(load_private_key(spec).public_key()) == want
    assert public_key_bytes(load_private_key("client.pem", base_dir=tmp_path).public_key()) == want
    for spec in (str(tmp_path / "client.crt"), pub_pem.decode(), xy.hex(), "04" + xy.hex()):
        assert public_key_bytes(load_public_key(spec)) == want
    assert public_key_bytes(public_key_from_bytes(b"\x04" + xy)) == want
    p384 = private_key_from_scalar(bytes(47) + b"\x05")
    assert isinstance(p384.curve, ec.SECP384R1)


def test_key_load_errors_do_not_echo_keys(tmp_path: Path) -> None:
    scalar = "11" * 30   # 30 bytes: no curve
    bad_xy = "22" * 64   # not a point
    typo = "3" * 63 + "g"  # a mistyped hex key
    cases = [
        (load_private_key, scalar), (load_public_key, bad_xy), (load_private_key, typo),
        (load_private_key, "0" * 64),  # zero scalar
        (load_private_key, str(tmp_path / "missing.pem")),
        (load_public_key, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"),
    ]
    for loader, spec in cases:
        with pytest.raises(KeyLoadError) as info:
            loader(spec)
        text = str(info.value)
        for secret in (scalar, bad_xy, typo, "0" * 64):
            assert secret not in text
    p521 = ec.generate_private_key(ec.SECP521R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with pytest.raises(KeyLoadError, match="not used by DLMS"):
        load_private_key(p521.decode())
