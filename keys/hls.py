"""HLS authentication functions f(challenge), mechanisms 2..7 (notes §7).

f is computed by the party that answers the other party's challenge: the client answers StoC
in pass 3 (f(StoC)), the server answers CtoS in pass 4 (f(CtoS)). In the arguments below,
`system_title` is the answering party's title, `peer_title` the other party's, `challenge` the
challenge being answered and `own_challenge` the one the answering party sent itself.

==  ==========================================================================================
m   f(challenge)
==  ==========================================================================================
2   AES-128-ECB of the challenge (zero-padded to a multiple of 16) under the secret zero-padded
    to 16 bytes (manufacturer-specific; the construction Gurux and dlms-cosem use)
3   MD5(challenge || secret)
4   SHA-1(challenge || secret)
5   SC || IC || GMAC, tag over AAD = SC || AK || challenge, IV = system_title || IC, key EK
6   SHA-256(secret || system_title || peer_title || challenge || own_challenge)
7   ECDSA (raw r || s) over system_title || peer_title || challenge || own_challenge
==  ==========================================================================================
"""

from __future__ import annotations

import hmac
from typing import TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from . import agreement
from .gcm import TAG_LENGTH, CipherInputError, KeyLike, gmac
from .secret import raw

__all__ = ["MECHANISM_NAMES", "HlsInputError", "compute_hls", "verify_hls"]

#: Authentication mechanism ids (mechanism-name OID 2.16.756.5.8.2.m).
MECHANISM_NAMES: dict[int, str] = {
    0: "lowest", 1: "low", 2: "high", 3: "high-md5", 4: "high-sha1", 5: "high-gmac",
    6: "high-sha256", 7: "high-ecdsa",
}

_T = TypeVar("_T")


class HlsInputError(ValueError):
    """A mechanism is unknown or an input it needs is missing or unusable."""


def _req(mechanism: int, name: str, value: _T | None) -> _T:
    if value is None:
        raise HlsInputError(f"HLS mechanism {mechanism} needs {name}")
    return value


def _digest(algorithm: hashes.HashAlgorithm, *parts: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    for part in parts:
        h.update(part)
    return h.finalize()


def _aes_ecb(secret: bytes, challenge: bytes) -> bytes:
    if len(secret) > 16:
        raise HlsInputError(f"HLS mechanism 2 secret must be at most 16 bytes, got {len(secret)}")
    key = secret.ljust(16, b"\x00")
    data = challenge.ljust(-(-len(challenge) // 16) * 16, b"\x00")
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def compute_hls(mechanism: int, challenge: bytes, *, secret: KeyLike | None = None,
                ek: KeyLike | None = None, ak: KeyLike | None = None,
                system_title: bytes | None = None, peer_title: bytes | None = None,
                own_challenge: bytes | None = None, ic: int | None = None, sc: int = 0x10,
                signing_key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    """f(challenge) as the answering party sends it; raises `HlsInputError` when an input the
    mechanism needs is missing. `sc` (mechanism 5) is 0x10, 0x11 or 0x12 for suites 0/1/2."""
    m = mechanism
    if m == 2:
        return _aes_ecb(raw(_req(m, "secret", secret)), challenge)
    if m in (3, 4):
        algorithm = hashes.MD5() if m == 3 else hashes.SHA1()
        return _digest(algorithm, challenge, raw(_req(m, "secret", secret)))
    if m == 5:
        if not sc & 0x10:
            raise HlsInputError(f"HLS-GMAC needs an authenticated SC, got {sc:02X}")
        count = _req(m, "ic", ic)
        tag = gmac(sc, _req(m, "ek", ek), _req(m, "ak", ak), _req(m, "system_title", system_title),
                   count, challenge)
        return bytes([sc]) + count.to_bytes(4, "big") + tag
    if m in (6, 7):
        data = (_req(m, "system_title", system_title) + _req(m, "peer_title", peer_title)
                + challenge + _req(m, "own_challenge", own_challenge))
        if m == 6:
            return _digest(hashes.SHA256(), raw(_req(m, "secret", secret)), data)
        return agreement.sign_raw(_req(m, "signing_key", signing_key), data)
    raise HlsInputError(f"authentication mechanism {mechanism} has no HLS function (2..7)")


def verify_hls(mechanism: int, f_value: bytes, challenge: bytes, *,
               secret: KeyLike | None = None, ek: KeyLike | None = None,
               ak: KeyLike | None = None, system_title: bytes | None = None,
               peer_title: bytes | None = None, own_challenge: bytes | None = None,
               public_key: ec.EllipticCurvePublicKey | None = None) -> bool | None:
    """Whether `f_value` answers `challenge`; None when it cannot be checked (no secret or key,
    a title or challenge unknown). For mechanism 5 SC and IC come from `f_value` itself; for
    mechanism 7 `public_key` is the answering party's ECDSA public key."""
    if mechanism in (2, 3, 4):
        inputs: dict[str, object] = {"secret": secret}
    elif mechanism == 5:
        inputs = {"ek": ek, "ak": ak, "system_title": system_title}
    elif mechanism == 6:
        inputs = {"secret": secret, "system_title": system_title, "peer_title": peer_title,
                  "own_challenge": own_challenge}
    elif mechanism == 7:
        inputs = {"public_key": public_key, "system_title": system_title,
                  "peer_title": peer_title, "own_challenge": own_challenge}
    else:
        raise HlsInputError(f"authentication mechanism {mechanism} has no HLS function (2..7)")
    if any(v is None for v in inputs.values()):
        return None
    if mechanism == 7 and public_key is not None:
        data = bytes(system_title or b"") + bytes(peer_title or b"") + challenge + \
            bytes(own_challenge or b"")
        return agreement.verify_raw(public_key, f_value, data)
    if mechanism == 5:
        if len(f_value) != 5 + TAG_LENGTH or not f_value[0] & 0x10:
            return False
        ic = int.from_bytes(f_value[1:5], "big")
        try:
            expected = compute_hls(5, challenge, ek=ek, ak=ak, system_title=system_title, ic=ic,
                                   sc=f_value[0])
        except CipherInputError:
            return None
    else:
        expected = compute_hls(mechanism, challenge, secret=secret, system_title=system_title,
                               peer_title=peer_title, own_challenge=own_challenge)
    return hmac.compare_digest(bytes(f_value), expected)
