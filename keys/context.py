"""The key context a ciphered layer deciphers through (duck-typed, like Scapy TLS's tls_session).

`KeyContext.decipher(envelope)` picks the key from the tag family (never from guessed state),
the IV system title from the envelope or the association, verifies the tag, and reports which key
protected the APDU. Wrong keys are findings, never exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from layers.apdu.base import APDU
from layers.expert import Finding, add_finding, findings_of
from layers.security import sc_authenticated, sc_broadcast, sc_compressed, sc_encrypted

from .gcm import CipherInputError, TagMismatch, keystream_decrypt, unprotect
from .keystore import Keystore, MeterKeys
from .secret import SecretKey

REQUEST_TAGS = frozenset({0x01, 0x05, 0x06, 0x16, 0x60, 0x62, 0xC0, 0xC1, 0xC3, 0xD9, 0xE6})


@dataclass
class Association:
    """What the tracker knows of one association that deciphering needs."""

    client_title: bytes | None = None
    server_title: bytes | None = None
    dedicated_key: SecretKey | None = None
    dedicated_source: str = ""


@dataclass
class Candidate:
    """A key to try, with the authentication key that goes with it and how to name it."""

    key: SecretKey
    ak: SecretKey | None
    kind: str
    name: str


@dataclass
class DecipherResult:
    """What deciphering one envelope found. Holds no key bytes."""

    plaintext: bytes | None = None
    key_kind: str | None = None
    key_name: str | None = None
    tag_verified: bool | None = None
    system_title: bytes | None = None
    packet: Any = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def inner_name(self) -> str | None:
        return getattr(self.packet, "apdu_name", None) if self.packet is not None else None


class KeyContext:
    """Keys for one conversation: a keystore plus the association state the tracker keeps.

    The dissector sets `association` and `direction` before each APDU is dissected.
    """

    def __init__(self, keystore: Keystore | None = None) -> None:
        self.keystore = keystore or Keystore([])
        self.association = Association()
        self.direction = "unknown"

    # -- key selection -------------------------------------------------------------------
    def _entries(self) -> list[MeterKeys]:
        a = self.association
        return self.keystore.for_titles(a.server_title, a.client_title)

    def candidates(self, kind: str) -> list[Candidate]:
        """Keys of one kind (`global-unicast`, `global-broadcast`, `dedicated`), best match first."""
        out: list[Candidate] = []
        if kind == "dedicated" and self.association.dedicated_key is not None:
            ak = next((e.ak for e in self._entries() if e.ak is not None), None)
            src = self.association.dedicated_source or "AARQ"
            out.append(Candidate(self.association.dedicated_key, ak, kind, f"dedicated ({src})"))
        attr = {"global-unicast": "ek", "global-broadcast": "bek", "dedicated": "dedicated"}[kind]
        for entry in self._entries():
            key = getattr(entry, attr)
            if key is not None:
                out.append(Candidate(key, entry.ak, kind, f"{entry.name}/{attr}"))
        return out

    def all_candidates(self) -> list[Candidate]:
        """Every key of the keystore (and the learned dedicated key), for 'try every key'."""
        out = self.candidates("dedicated")[:1]
        for entry in self.keystore.entries:
            for attr, kind in (("ek", "global-unicast"), ("bek", "global-broadcast"),
                               ("dedicated", "dedicated")):
                key = getattr(entry, attr)
                if key is not None:
                    out.append(Candidate(key, entry.ak, kind, f"{entry.name}/{attr}"))
        return out

    # -- IV system title ------------------------------------------------------------------
    def system_title(self, env: Any) -> bytes | None:
        """Carried title, else the title of the side that sent the APDU."""
        carried = env.carried_title()
        if carried:
            return carried
        acse = _enclosing_acse(env)
        if acse is not None:
            if getattr(acse, "apdu_name", "") in ("aarq", "rlrq"):
                return getattr(acse, "calling_ap_title", None) or self.association.client_title
            return getattr(acse, "responding_ap_title", None) or self.association.server_title
        if self._sent_by_client(env):
            return self.association.client_title
        return self.association.server_title

    def _sent_by_client(self, env: Any) -> bool:
        if self.direction in ("client->server", "server->client"):
            return self.direction == "client->server"
        return getattr(env, "plain_tag", None) in REQUEST_TAGS

    # -- deciphering ----------------------------------------------------------------------
    def decipher(self, env: Any) -> DecipherResult:
        """Decipher one envelope; findings go on the envelope packet."""
        content = env.ciphered
        res = DecipherResult(key_kind=env.implied_key_kind())
        if content is None:
            return res
        sc, ic = content.security_control, content.invocation_counter
        payload = bytes(content.information or b"") + bytes(content.fields.get(
            "authentication_tag") or b"")
        title = self.system_title(env)
        res.system_title = title
        if not (sc_authenticated(sc) or sc_encrypted(sc)):
            res.plaintext, res.tag_verified = bytes(content.information or b""), None
            return self._finish(env, res)
        kind = res.key_kind
        if kind is None:
            add_finding(env, "note", "security.key-kind-unknown",
                        "the key for this envelope is not identified by the tag")
            return res
        if not self.keystore.entries and self.association.dedicated_key is None:
            add_finding(env, "note", "security.no-key",
                        f"no keys given: {kind} key implied by the tag, not deciphered")
            return res
        if title is None:
            add_finding(env, "warning", "security.no-system-title",
                        "system title for the IV unknown (AARQ/AARE not seen): cannot decipher")
            return res
        primary = self.candidates(kind)
        if not primary:
            if kind == "dedicated":
                add_finding(env, "warning", "security.no-dedicated-key",
                            "ded-ciphered APDU without a known dedicated key (no AARQ with a"
                            " deciphered dedicated key in this association, none in the keystore)")
            else:
                add_finding(env, "note", "security.no-key", f"no {kind} key for this APDU")
        for cand in primary:
            plain = _try(cand, sc, title, ic, payload)
            if plain is not None and (sc_authenticated(sc) or _well_formed(plain)):
                res.plaintext, res.key_name = plain, cand.name
                res.tag_verified = True if sc_authenticated(sc) else None
                return self._finish(env, res)
        if sc_authenticated(sc):
            for cand in self.all_candidates():
                if any(cand.key == p.key and cand.ak == p.ak for p in primary):
                    continue
                plain = _try(cand, sc, title, ic, payload)
                if plain is not None:
                    res.plaintext, res.key_name, res.tag_verified = plain, cand.name, True
                    add_finding(env, "error", "security.wrong-key-family",
                                f"the tag implies the {kind} key, but it verified with"
                                f" {cand.name} ({cand.kind})")
                    res.key_kind = cand.kind
                    return self._finish(env, res)
            if primary:
                return self._keystream_fallback(env, res, primary, sc, title, ic, payload)
        elif primary:
            cand = primary[0]
            res.plaintext = keystream_decrypt(sc, cand.key, title, ic, payload)
            res.key_name = cand.name
            add_finding(env, "warning", "security.not-well-formed",
                        f"encryption only (no tag): {cand.name} deciphers to bytes that do not"
                        " parse as an APDU; the key is probably wrong")
            return self._finish(env, res)
        return res

    def _keystream_fallback(self, env: Any, res: DecipherResult, primary: list[Candidate],
                            sc: int, title: bytes, ic: int, payload: bytes) -> DecipherResult:
        res.tag_verified = False
        for cand in primary:
            try:
                plain = keystream_decrypt(sc, cand.key, title, ic, payload)
            except CipherInputError:
                continue
            if _well_formed(plain):
                res.plaintext, res.key_name = plain, cand.name
                name = getattr(APDU(plain), "apdu_name", "APDU")
                add_finding(env, "error", "security.tag-failed-ak-wrong",
                            f"tag failed, but {cand.name} deciphers to a well-formed {name}:"
                            " the AK or the AAD is wrong")
                return self._finish(env, res)
        add_finding(env, "error", "security.tag-failed",
                    "tag verification failed: no key verified (tried every candidate key)")
        return res

    def _finish(self, env: Any, res: DecipherResult) -> DecipherResult:
        sc = env.ciphered.security_control
        if sc_compressed(sc):
            add_finding(env, "warning", "security.compressed",
                        "plaintext is V.44-compressed (SC bit 7); decompression is not"
                        " supported, the inner APDU is shown undecoded")
            return res
        if sc_broadcast(sc) and res.key_kind == "global-unicast":
            res.key_kind = "global-broadcast"
        return res


def _try(cand: Candidate, sc: int, title: bytes, ic: int, payload: bytes) -> bytes | None:
    try:
        if sc_authenticated(sc) and cand.ak is None:
            return None
        return unprotect(sc, cand.key, cand.ak, title, ic, payload)
    except (TagMismatch, CipherInputError):
        return None


def _well_formed(plaintext: bytes) -> bool:
    """True when the bytes dissect as a known APDU with no error finding and nothing left over."""
    if not plaintext:
        return False
    pkt = APDU(plaintext)
    if getattr(pkt, "apdu_name", "unknown") == "unknown":
        return False
    if any(f.severity == "error" for f in findings_of(pkt)):
        return False
    from scapy.packet import Padding, Raw

    return not (pkt.haslayer(Raw) or pkt.haslayer(Padding))


def _enclosing_acse(pkt: Any) -> Any:
    """The AARQ/AARE/RLRQ/RLRE that carries this packet in its user-information, if any."""
    p = getattr(pkt, "parent", None) or getattr(pkt, "underlayer", None)
    for _ in range(16):
        if p is None:
            return None
        if getattr(p, "apdu_name", "") in ("aarq", "aare", "rlrq", "rlre"):
            return p
        p = getattr(p, "parent", None) or getattr(p, "underlayer", None)
    return None
