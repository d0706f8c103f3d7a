"""ECDH key agreement, the DLMS single-step KDF and ECDSA for suites 1 and 2 (notes §4.3/§4.4).

Suite 1: P-256 with SHA-256; suite 2: P-384 with SHA-384. Public keys travel as raw x || y
(64 / 96 bytes), signatures as raw r || s (64 / 96 bytes).

KDF (one round suffices: the hash is at least as long as the key):
``Hash(00000001 || Z || AlgorithmID || originator ST || recipient ST)`` for One-Pass
Diffie-Hellman C(1e,1s), and
``Hash(00000001 || Z || AlgorithmID || originator ST || len || transaction-id || recipient ST)``
for the Static Unified Model C(0e,2s); AlgorithmID = ``60 85 74 05 08 03 x`` with x = 0
(AES-GCM-128, suite 1) or 1 (AES-GCM-256, suite 2). The key is the first 16 (suite 1) or 32
(suite 2) bytes of the hash.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TypeVar

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from layers.fields import encode_length

from .gcm import SUITE_KEY_LENGTHS

__all__ = [
    "ALGORITHM_ID_PREFIX", "KeyLoadError", "algorithm_id", "curve_for_suite", "derive_key",
    "ecdh", "ephemeral_key_signed_data", "hash_for_suite", "kdf_input", "load_private_key",
    "load_public_key", "one_pass_dh_key", "private_key_from_scalar", "public_key_bytes",
    "public_key_from_bytes", "sign_raw", "split_agreed_key_data", "static_unified_key",
    "suite_of_key", "verify_ephemeral_key", "verify_raw",
]

#: First six bytes of the DLMS cryptographic algorithm ID OID (2.16.756.5.8.3.x).
ALGORITHM_ID_PREFIX = bytes.fromhex("608574050803")

_CURVES: dict[int, type[ec.EllipticCurve]] = {1: ec.SECP256R1, 2: ec.SECP384R1}
_HASHES: dict[int, type[hashes.HashAlgorithm]] = {1: hashes.SHA256, 2: hashes.SHA384}
_COORD: dict[int, int] = {1: 32, 2: 48}
_HEX = re.compile(r"(?:0x)?[0-9A-Fa-f\s:]+")
_PATH_CHARS = re.compile(r"[/\\.~]")


_K = TypeVar("_K", ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)


class KeyLoadError(ValueError):
    """An ECC key could not be loaded (message names the source, never key bytes)."""


def _suite(suite: int) -> int:
    if suite not in _CURVES:
        raise ValueError(f"security suite {suite} has no ECC algorithms (only 1 and 2)")
    return suite


def curve_for_suite(suite: int) -> ec.EllipticCurve:
    """P-256 for suite 1, P-384 for suite 2."""
    return _CURVES[_suite(suite)]()


def hash_for_suite(suite: int) -> hashes.HashAlgorithm:
    """SHA-256 for suite 1, SHA-384 for suite 2."""
    return _HASHES[_suite(suite)]()


def suite_of_key(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> int:
    """Suite whose curve the key is on (1 for P-256, 2 for P-384)."""
    for suite, curve in _CURVES.items():
        if isinstance(key.curve, curve):
            return suite
    raise ValueError(f"curve {key.curve.name} is not used by DLMS suites 1/2")


def algorithm_id(suite: int) -> bytes:
    """AlgorithmID of the KDF: AES-GCM-128 (x=0) for suite 1, AES-GCM-256 (x=1) for suite 2."""
    return ALGORITHM_ID_PREFIX + bytes([_suite(suite) - 1])


# --- keys ----------------------------------------------------------------------------------

def public_key_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    """Raw x || y of a public key (the leading 04 of the uncompressed point dropped)."""
    return key.public_bytes(serialization.Encoding.X962,
                            serialization.PublicFormat.UncompressedPoint)[1:]


def public_key_from_bytes(data: bytes) -> ec.EllipticCurvePublicKey:
    """Public key from raw x || y (64 bytes P-256, 96 bytes P-384), with or without 04."""
    if len(data) in (65, 97) and data[0] == 4:
        data = data[1:]
    suite = {64: 1, 96: 2}.get(len(data))
    if suite is None:
        raise KeyLoadError(f"raw public key must be 64 or 96 bytes (x||y), got {len(data)}")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve_for_suite(suite),
                                                            b"\x04" + bytes(data))
    except ValueError:
        raise KeyLoadError("raw public key is not a point on the curve") from None


def private_key_from_scalar(data: bytes) -> ec.EllipticCurvePrivateKey:
    """Private key from its big-endian scalar (32 bytes P-256, 48 bytes P-384)."""
    suite = {32: 1, 48: 2}.get(len(data))
    if suite is None:
        raise KeyLoadError(f"private scalar must be 32 or 48 bytes, got {len(data)}")
    try:
        return ec.derive_private_key(int.from_bytes(data, "big"), curve_for_suite(suite))
    except ValueError:
        raise KeyLoadError("private scalar is out of range for the curve") from None


def _source_bytes(spec: str | bytes | Path, base_dir: Path | None) -> tuple[bytes, str, bool]:
    """(content, label for messages, is_hex) of a key given as PEM text, hex or a file path."""
    if isinstance(spec, bytes):
        return spec, "key bytes", False
    text = str(spec).strip()
    if isinstance(spec, str) and text.startswith("-----BEGIN"):
        return text.encode(), "PEM text", False
    if isinstance(spec, str) and _HEX.fullmatch(text):
        digits = re.sub(r"[\s:]", "", text)
        digits = digits[2:] if digits.startswith("0x") else digits
        if len(digits) % 2:
            raise KeyLoadError(f"hex key has an odd number of digits ({len(digits)})")
        return bytes.fromhex(digits), "hex key", True
    if isinstance(spec, str) and not _PATH_CHARS.search(text):
        # Neither hex nor path-like: perhaps a mistyped key, so it is not echoed.
        raise KeyLoadError("neither hex, PEM text nor a file path")
    path = Path(text).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    try:
        return path.read_bytes(), f"file {path}", False
    except OSError as exc:
        raise KeyLoadError(f"cannot read key file {path}: {exc.strerror}") from None


def _check_curve(key: _K, label: str) -> _K:
    try:
        suite_of_key(key)
    except ValueError as exc:
        raise KeyLoadError(f"{label}: {exc}") from None
    return key


def load_private_key(spec: str | bytes | Path, *,
                     base_dir: Path | None = None) -> ec.EllipticCurvePrivateKey:
    """Private ECC key from a PEM/DER file path, PEM text or a hex scalar (32/48 bytes)."""
    data, label, is_hex = _source_bytes(spec, base_dir)
    if is_hex:
        return private_key_from_scalar(data)
    try:
        if data.lstrip().startswith(b"-----"):
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyLoadError(f"{label}: not an unencrypted PEM/DER private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyLoadError(f"{label}: not an elliptic-curve private key")
    return _check_curve(key, label)


def load_public_key(spec: str | bytes | Path, *,
                    base_dir: Path | None = None) -> ec.EllipticCurvePublicKey:
    """Public ECC key from a PEM/DER file path (public key or X.509 certificate), PEM text or
    hex x || y (64/96 bytes, optionally with a leading 04)."""
    from cryptography import x509  # certificates are rare in keystores: loaded when met

    data, label, is_hex = _source_bytes(spec, base_dir)
    if is_hex:
        return public_key_from_bytes(data)
    try:
        if b"CERTIFICATE-----" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        elif data.lstrip().startswith(b"-----"):
            key = serialization.load_pem_public_key(data)
        else:
            try:
                key = serialization.load_der_public_key(data)
            except ValueError:
                key = x509.load_der_x509_certificate(data).public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyLoadError(f"{label}: not a PEM/DER public key or certificate") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeyLoadError(f"{label}: not an elliptic-curve public key")
    return _check_curve(key, label)


# --- ECDH and KDF --------------------------------------------------------------------------

def ecdh(private_key: ec.EllipticCurvePrivateKey, peer_public_key: ec.EllipticCurvePublicKey
         ) -> bytes:
    """Shared secret Z (x coordinate of the ECDH point)."""
    if private_key.curve.name != peer_public_key.curve.name:
        raise ValueError(f"curves differ: {private_key.curve.name} vs {peer_public_key.curve.name}")
    return private_key.exchange(ec.ECDH(), peer_public_key)


def _title(title: bytes, what: str) -> bytes:
    if len(title) != 8:
        raise ValueError(f"{what} system title must be 8 bytes, got {len(title)}")
    return bytes(title)


def kdf_input(suite: int, z: bytes, originator_title: bytes, recipient_title: bytes,
              transaction_id: bytes | None = None) -> bytes:
    """The bytes the KDF hashes: 00000001 || Z || AlgorithmID || originator ST
    [|| len || transaction-id] || recipient ST (the bracket for C(0e,2s))."""
    middle = b"" if transaction_id is None else encode_length(len(transaction_id)) + transaction_id
    return (b"\x00\x00\x00\x01" + bytes(z) + algorithm_id(suite)
            + _title(originator_title, "originator") + middle
            + _title(recipient_title, "recipient"))


def derive_key(suite: int, z: bytes, originator_title: bytes, recipient_title: bytes,
               transaction_id: bytes | None = None, *, key_length: int | None = None) -> bytes:
    """Content key from Z: the first 16 (suite 1) or 32 (suite 2) bytes of the KDF hash.

    `key_length=16` with suite 2 reproduces Gurux .NET, which keeps 16 bytes in every suite.
    """
    h = hashes.Hash(hash_for_suite(suite))
    h.update(kdf_input(suite, z, originator_title, recipient_title, transaction_id))
    return h.finalize()[: key_length or SUITE_KEY_LENGTHS[suite]]


def one_pass_dh_key(suite: int, private_key: ec.EllipticCurvePrivateKey,
                    public_key: ec.EllipticCurvePublicKey, originator_title: bytes,
                    recipient_title: bytes, *, key_length: int | None = None) -> bytes:
    """C(1e,1s): Z from the originator's ephemeral key and the recipient's static key
    (either side's private key with the other side's public key)."""
    return derive_key(suite, ecdh(private_key, public_key), originator_title, recipient_title,
                      key_length=key_length)


def static_unified_key(suite: int, private_key: ec.EllipticCurvePrivateKey,
                       public_key: ec.EllipticCurvePublicKey, originator_title: bytes,
                       recipient_title: bytes, transaction_id: bytes, *,
                       key_length: int | None = None) -> bytes:
    """C(0e,2s): Z from the two static key-agreement keys; the transaction id enters the KDF."""
    return derive_key(suite, ecdh(private_key, public_key), originator_title, recipient_title,
                      transaction_id, key_length=key_length)


# --- ECDSA ---------------------------------------------------------------------------------

def sign_raw(private_key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA signature as raw r || s (SHA-256 on P-256, SHA-384 on P-384)."""
    suite = suite_of_key(private_key)
    r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(hash_for_suite(suite))))
    n = _COORD[suite]
    return r.to_bytes(n, "big") + s.to_bytes(n, "big")


def verify_raw(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    """Whether raw r || s (64 bytes P-256, 96 bytes P-384) signs `data` under `public_key`."""
    suite = suite_of_key(public_key)
    n = _COORD[suite]
    if len(signature) != 2 * n:
        return False
    der = encode_dss_signature(int.from_bytes(signature[:n], "big"),
                               int.from_bytes(signature[n:], "big"))
    try:
        public_key.verify(der, data, ec.ECDSA(hash_for_suite(suite)))
    except InvalidSignature:
        return False
    return True


def split_agreed_key_data(suite: int, data: bytes) -> tuple[ec.EllipticCurvePublicKey, bytes]:
    """Split the key-ciphered-data of a C(1e,1s) agreed key into (ephemeral public key,
    signature): x || y followed by r || s, each 2 x 32 (suite 1) or 2 x 48 (suite 2) bytes."""
    n = 2 * _COORD[_suite(suite)]
    if len(data) != 2 * n:
        raise KeyLoadError(f"suite {suite} agreed-key data must be {2 * n} bytes, got {len(data)}")
    return public_key_from_bytes(data[:n]), bytes(data[n:])


def ephemeral_key_signed_data(key_id: int, ephemeral_key: ec.EllipticCurvePublicKey) -> bytes:
    """What the ephemeral key's signature covers in Gurux stacks: key-id (1 byte) || x || y."""
    return bytes([key_id]) + public_key_bytes(ephemeral_key)


def verify_ephemeral_key(signing_key: ec.EllipticCurvePublicKey,
                         ephemeral_key: ec.EllipticCurvePublicKey, signature: bytes,
                         key_id: int = 0) -> bool:
    """Check the originator's signature over its ephemeral public key."""
    return verify_raw(signing_key, signature, ephemeral_key_signed_data(key_id, ephemeral_key))
