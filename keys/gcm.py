"""DLMS/COSEM AES-GCM (security suites 0, 1 and 2; notes §5).

IV = system title of the sender (8) || invocation counter (4, big-endian). Tag 12 bytes.
Per security policy (SC bits 4/5) the payload after SC || IC is:

=================  ==========================  =================================
SC & 0x30          AAD                         payload
=================  ==========================  =================================
0x10 auth only     SC || AK || plaintext       plaintext || tag
0x20 enc only      (no tag)                    ciphertext (AES-CTR from IV||00000002)
0x30 auth+enc      SC || AK                    ciphertext || tag
=================  ==========================  =================================

SC in the AAD is the byte as received (all bits); `aad_sc` overrides it for peers that
build it differently (Gurux Python masks bits 6/7). The AK only enters the AAD. Compression
(bit 7) is applied to the plaintext outside this module.

One `AESGCM` object is cached per key: with it, an authenticated decryption costs two
OpenSSL calls (CTR via GCM without AAD, then the tag over the recovered plaintext).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from layers.security import SUITE_NAMES, TAG_LENGTH, describe_sc

from .secret import SecretKey, raw

__all__ = [
    "SUITE_KEY_LENGTHS", "TAG_LENGTH", "CipherInputError", "Opening", "SecurityControl",
    "SecurityError", "TagMismatch", "gmac", "keystream_decrypt", "nonce",
    "parse_security_header", "protect", "unprotect",
]

#: Symmetric key length per security suite (notes §5.2).
SUITE_KEY_LENGTHS: dict[int, int] = {0: 16, 1: 16, 2: 32}

_AUTH = 0x10
_ENC = 0x20

KeyLike = SecretKey | bytes


class SecurityError(Exception):
    """Base of the errors raised by the DLMS crypto helpers (never carries key bytes)."""


class TagMismatch(SecurityError):
    """The authentication tag does not verify with the given key, AK and title."""


class CipherInputError(SecurityError, ValueError):
    """Inputs that cannot be used: wrong key length for the suite, unknown suite, short payload,
    system title not 8 bytes, missing AK for an authenticated policy."""


@dataclass(frozen=True, slots=True)
class SecurityControl:
    """The security control byte: suite bits 0..3, authenticated bit 4, encrypted bit 5,
    broadcast key bit 6, compressed bit 7."""

    value: int

    def __post_init__(self) -> None:
        if not 0 <= self.value <= 0xFF:
            raise ValueError(f"security control must be one byte, got {self.value}")

    @property
    def suite(self) -> int:
        return self.value & 0x0F

    @property
    def authenticated(self) -> bool:
        return bool(self.value & _AUTH)

    @property
    def encrypted(self) -> bool:
        return bool(self.value & _ENC)

    @property
    def broadcast(self) -> bool:
        return bool(self.value & 0x40)

    @property
    def compressed(self) -> bool:
        return bool(self.value & 0x80)

    @property
    def suite_name(self) -> str:
        return SUITE_NAMES.get(self.suite, "reserved")

    @property
    def key_length(self) -> int | None:
        """Symmetric key length the suite needs, or None for a reserved suite."""
        return SUITE_KEY_LENGTHS.get(self.suite)

    def describe(self) -> str:
        """Short form, e.g. ``SC=30 auth+enc suite0``."""
        return describe_sc(self.value)

    def __int__(self) -> int:
        return self.value


def nonce(system_title: bytes, ic: int) -> bytes:
    """IV = system title (8 bytes) || invocation counter (4 bytes, big-endian)."""
    if len(system_title) != 8:
        raise CipherInputError(f"system title must be 8 bytes, got {len(system_title)}")
    if not 0 <= ic <= 0xFFFFFFFF:
        raise CipherInputError(f"invocation counter out of range: {ic}")
    return bytes(system_title) + ic.to_bytes(4, "big")


@lru_cache(maxsize=1024)
def _aead(key: bytes) -> AESGCM:
    return AESGCM(key)


def _key_length(sc: int) -> int:
    want = SUITE_KEY_LENGTHS.get(sc & 0x0F)
    if want is None:
        raise CipherInputError(f"security suite {sc & 0x0F} is not supported (SC={sc:02X})")
    return want


def _cipher(sc: int, key: KeyLike, want: int | None = None) -> AESGCM:
    key_bytes = raw(key)
    want = want or _key_length(sc)
    if len(key_bytes) != want:
        raise CipherInputError(
            f"suite {sc & 0x0F} needs a {want}-byte key, got {len(key_bytes)} bytes"
            + (f" ({key.name})" if isinstance(key, SecretKey) else ""))
    return _aead(key_bytes)


def _ctr(aead: AESGCM, iv: bytes, data: bytes) -> bytes:
    # GCM encryption without AAD is AES-CTR from counter block IV||00000002 plus a tag; CTR is
    # its own inverse, so this both encrypts and decrypts.
    return aead.encrypt(iv, data, None)[: len(data)]


def _tag(aead: AESGCM, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
    return aead.encrypt(iv, plaintext, aad)[-16:][:TAG_LENGTH]


def _aad_prefix(sc: int, ak: KeyLike | None, aad_sc: int | None, extra_aad: bytes) -> bytes:
    if ak is None:
        raise CipherInputError(f"SC={sc:02X} is authenticated: an authentication key is needed "
                               "(keystream_decrypt deciphers without one)")
    return bytes([sc if aad_sc is None else aad_sc]) + raw(ak) + extra_aad


def protect(sc: int, key: KeyLike, ak: KeyLike | None, system_title: bytes, ic: int,
            plaintext: bytes, *, aad_sc: int | None = None, extra_aad: bytes = b"") -> bytes:
    """The payload that follows SC || IC on the wire, for policy SC & 0x30.

    `extra_aad` goes after SC || AK (the suite 1/2 general-ciphering variant of notes §5.4).
    """
    aead = _cipher(sc, key)
    iv = nonce(system_title, ic)
    policy = sc & (_AUTH | _ENC)
    if policy == _AUTH | _ENC:
        out = aead.encrypt(iv, plaintext, _aad_prefix(sc, ak, aad_sc, extra_aad))
        return out[:-16] + out[-16:][:TAG_LENGTH]
    if policy == _ENC:
        return _ctr(aead, iv, plaintext)
    if policy == _AUTH:
        return plaintext + _tag(aead, iv, b"", _aad_prefix(sc, ak, aad_sc, extra_aad) + plaintext)
    return bytes(plaintext)


def _split_tag(sc: int, payload: bytes) -> tuple[bytes, bytes]:
    if len(payload) < TAG_LENGTH:
        raise CipherInputError(f"SC={sc:02X} needs a {TAG_LENGTH}-byte tag, "
                               f"payload has {len(payload)} bytes")
    return payload[:-TAG_LENGTH], payload[-TAG_LENGTH:]


def unprotect(sc: int, key: KeyLike, ak: KeyLike | None, system_title: bytes, ic: int,
              payload: bytes, *, aad_sc: int | None = None, extra_aad: bytes = b"") -> bytes:
    """Plaintext of the payload after SC || IC; raises `TagMismatch` if the tag does not verify.

    Encryption-only payloads carry no tag: any key "succeeds" and yields some plaintext.
    """
    plaintext = Opening(sc, system_title, ic, payload, aad_sc=aad_sc,
                        extra_aad=extra_aad).verify(key, ak)
    if plaintext is None:
        raise TagMismatch(f"authentication tag does not verify (SC={sc:02X}, IC={ic})")
    return plaintext


class Opening:
    """One payload (after SC || IC) to open with one key or many (a key search): the IV and
    the tag split are made once, each key then costs its two OpenSSL calls.

    The constructor raises `CipherInputError` for inputs no key can use (suite, system title,
    invocation counter, payload shorter than a tag); `verify` for a key that does not fit.
    """

    def __init__(self, sc: int, system_title: bytes, ic: int, payload: bytes, *,
                 aad_sc: int | None = None, extra_aad: bytes = b"") -> None:
        self.sc = sc
        self.key_length = _key_length(sc)
        self.iv = nonce(system_title, ic)
        self.policy = sc & (_AUTH | _ENC)
        self.aad_sc, self.extra_aad = aad_sc, extra_aad
        self.body, self.tag = _split_tag(sc, payload) if self.policy & _AUTH else (payload, b"")

    @property
    def authenticated(self) -> bool:
        return bool(self.policy & _AUTH)

    def first_byte(self, key: KeyLike) -> int | None:
        """The first plaintext byte under `key`, from one byte of keystream (None when the
        policy does not encrypt, the body is empty or the key does not fit): in a key search,
        the keys that give the byte expected are tried first."""
        if not self.policy & _ENC or not self.body:
            return None
        try:
            aead = _cipher(self.sc, key, self.key_length)
        except CipherInputError:
            return None
        return _ctr(aead, self.iv, self.body[:1])[0]

    def verify(self, key: KeyLike, ak: KeyLike | None) -> bytes | None:
        """The plaintext, or None when the tag does not verify with this key and AK."""
        aead = _cipher(self.sc, key, self.key_length)
        policy = self.policy
        if policy == _ENC:
            return _ctr(aead, self.iv, self.body)
        if not policy:
            return bytes(self.body)
        prefix = _aad_prefix(self.sc, ak, self.aad_sc, self.extra_aad)
        if policy == _AUTH:
            plaintext, expected = self.body, _tag(aead, self.iv, b"", prefix + self.body)
        else:
            plaintext = _ctr(aead, self.iv, self.body)
            expected = _tag(aead, self.iv, plaintext, prefix)
        return plaintext if hmac.compare_digest(self.tag, expected) else None


def keystream_decrypt(sc: int, key: KeyLike, system_title: bytes, ic: int,
                      payload: bytes) -> bytes:
    """Plaintext without checking the tag (AK unknown): strips the tag when SC bit 4 is set and
    deciphers with AES-CTR when bit 5 is set."""
    aead = _cipher(sc, key)
    iv = nonce(system_title, ic)
    body = _split_tag(sc, payload)[0] if sc & _AUTH else payload
    return _ctr(aead, iv, body) if sc & _ENC else bytes(body)


def gmac(sc: int, key: KeyLike, ak: KeyLike, system_title: bytes, ic: int, data: bytes) -> bytes:
    """12-byte GMAC tag with AAD = SC || AK || data (HLS-GMAC, notes §7)."""
    return _tag(_cipher(sc, key), nonce(system_title, ic), b"", _aad_prefix(sc, ak, None, b"")
                + data)


def parse_security_header(content: bytes) -> tuple[SecurityControl, int, bytes]:
    """Split SC (1) || IC (4) || payload; raises `CipherInputError` when shorter than 5 bytes."""
    if len(content) < 5:
        raise CipherInputError(f"security header needs 5 bytes, got {len(content)}")
    return SecurityControl(content[0]), int.from_bytes(content[1:5], "big"), bytes(content[5:])
