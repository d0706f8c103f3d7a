"""The keys of general-ciphering key-info (wrapped with the KEK, agreed by ECDH) and the
signature of general-signing, from the keystore's entries."""

from __future__ import annotations

from typing import Any

from layers.expert import add_finding

from . import agreement
from .agreement import verify_raw
from .keystore import MeterKeys
from .search import Candidate, DecipherResult
from .secret import SecretKey
from .wrap import UnwrapError, unwrap_key


def unwrapped_candidates(env: Any, entries: list[MeterKeys]) -> list[Candidate]:
    """Content keys of a general-ciphering wrapped-key key-info: unwrapped (RFC 3394) with the
    KEK of each entry."""
    out = []
    data = bytes(env.key_info.key_ciphered_data or b"")
    for entry in entries:
        if entry.kek is None:
            continue
        try:
            key = unwrap_key(entry.kek, data)
        except (UnwrapError, ValueError):
            add_finding(env, "warning", "security.unwrap-failed",
                        f"wrapped key does not unwrap with {entry.name}/kek")
            continue
        out.append(Candidate(SecretKey(key, f"{entry.name}/wrapped"), entry.ak, "wrapped",
                             f"{entry.name}/kek-wrapped key"))
    return out


def agreed_candidates(env: Any, entries: list[MeterKeys]) -> list[Candidate]:
    """Content keys of a general-ciphering agreed-key key-info (ECDH C(1e,1s) or C(0e,2s)),
    with the agreement keys of each entry, both sides tried."""
    info = env.key_info
    scheme = bytes(info.key_parameters or b"\x00")[0]
    sc = env.security_control or 0
    suite = sc & 0x0F
    originator = env.carried_title() or b""
    recipient = bytes(env.recipient_system_title or b"")
    out = []
    for entry in entries:
        for side, peer in (("server", "client"), ("client", "server")):
            priv = getattr(entry, f"{side}_agreement_key")
            if priv is None:
                continue
            try:
                if scheme == 1:
                    eph, sig = agreement.split_agreed_key_data(
                        suite, bytes(info.key_ciphered_data or b""))
                    signer = entry.signing_public_key(peer)
                    if signer is not None and not agreement.verify_ephemeral_key(
                            signer, eph, sig):
                        add_finding(env, "error", "security.ephemeral-signature",
                                    "the ephemeral public key's signature does not verify"
                                    f" with {entry.name}/{peer} signing key")
                    key = agreement.one_pass_dh_key(suite, priv, eph, originator,
                                                    recipient)
                elif scheme == 2:
                    pub = entry.agreement_public_key(peer)
                    if pub is None:
                        continue
                    key = agreement.static_unified_key(
                        suite, priv, pub, originator, recipient,
                        bytes(env.transaction_id or b""))
                else:
                    add_finding(env, "warning", "security.key-parameters",
                                f"unknown key-agreement scheme {scheme}")
                    return out
            except (ValueError, agreement.KeyLoadError):
                continue
            out.append(Candidate(SecretKey(key, f"{entry.name}/agreed"), entry.ak,
                                 "agreed", f"{entry.name}/{side}-agreed key"))
    return out


def verify_signature(env: Any, entries: list[MeterKeys]) -> DecipherResult:
    """A general-signing envelope's signature, with the originator's public keys."""
    res = DecipherResult()
    originator = env.carried_title()
    signature = bytes(env.signature or b"")
    keys = []
    for entry in entries:
        for side, title in (("server", entry.system_title),
                            ("client", entry.client_system_title)):
            pub = entry.signing_public_key(side)
            if pub is not None and title in (None, originator):
                keys.append((entry.name, side, pub))
    if not keys:
        add_finding(env, "note", "security.signature-not-checked",
                    "general-signing: no public key of the originator in the keystore,"
                    " signature not checked")
        return res
    data = env.signed_bytes()
    for name, side, pub in keys:
        try:
            if verify_raw(pub, signature, data):
                res.key_name = f"{name}/{side}-signing key"
                res.tag_verified = True
                add_finding(env, "note", "security.signature-verified",
                            f"general-signing: signature verified with {res.key_name}")
                return res
        except ValueError:
            continue
    res.tag_verified = False
    add_finding(env, "error", "security.signature-failed",
                "general-signing: the signature verifies with no public key of the keystore")
    return res
