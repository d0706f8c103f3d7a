"""The key context a ciphered layer deciphers through (duck-typed, like Scapy TLS's tls_session).

`KeyContext.decipher(envelope)` picks the key from the tag family (never from guessed state),
the IV system title from the envelope or the association, verifies the tag, and reports which key
protected the APDU. Wrong keys are findings, never exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from layers.apdu.base import APDU
from layers.expert import Finding, add_finding, findings_of
from layers.security import sc_authenticated, sc_broadcast, sc_compressed, sc_encrypted

from .gcm import CipherInputError, Opening, keystream_decrypt
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
    # The title an earlier association at the same address answered with: while the server
    # title is unknown (AARQ), that meter's keys are tried first. Only the order of the search
    # changes; a key is always named as the unordered search would name it.
    server_title_hint: bytes | None = None
    # Keystore entries as key_transfer changed them, by entry name: the keystore itself never
    # changes; the association holds the replaced entries.
    overrides: dict[str, MeterKeys] = field(default_factory=dict)

    def entries(self, keystore: Keystore, server_title: bytes | None = None,
                client_title: bytes | None = None, every: bool = False) -> list[MeterKeys]:
        """The keystore's entries for a title pair (`Keystore.for_titles`), or all of them
        with `every`, as this association knows them (transferred keys in place)."""
        found = list(keystore.entries) if every else keystore.for_titles(server_title,
                                                                         client_title)
        if not self.overrides:
            return found
        return [self.overrides.get(e.name, e) for e in found]


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
    is_apdu: bool = True
    looks_like: str | None = None
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
        return a.entries(self.keystore, a.server_title, a.client_title)

    def _search_order(self, primary: list[Candidate], title: bytes) -> list[Candidate]:
        """`primary`, while the association does not know the server's title, with the keys
        of one meter first: the meter whose system title is the envelope's IV title (its
        sender's: an AARE's responding-AP-title, a pushing meter's general-ciphering title),
        else the one an earlier association at the same address answered with
        (`server_title_hint`). Only the order changes: a key is named as the plain order
        names it (`_canonical`)."""
        a = self.association
        if a.server_title is not None:
            return primary
        for hint in (title, a.server_title_hint):
            if hint is None:
                continue
            hinted = [e for e in self.keystore.for_titles(hint, a.client_title)
                      if e.system_title is not None]
            if hinted:
                names = {id(getattr(e, attr)) for e in hinted
                         for attr in ("ek", "bek", "dedicated")}
                first = [c for c in primary if id(c.key) in names]
                return first + [c for c in primary if id(c.key) not in names]
        return primary

    @staticmethod
    def _canonical(found: Candidate, primary: list[Candidate]) -> Candidate:
        """The first candidate in search order with the key pair that verified."""
        return next((c for c in primary if c.key == found.key and c.ak == found.ak), found)

    def candidates(self, kind: str) -> list[Candidate]:
        """Keys of one kind (global-unicast, global-broadcast, dedicated), best match first."""
        out: list[Candidate] = []
        if kind == "dedicated" and self.association.dedicated_key is not None:
            ak = next((e.ak for e in self._entries() if e.ak is not None), None)
            src = self.association.dedicated_source or "learned from an AARQ"
            out.append(Candidate(self.association.dedicated_key, ak, kind, src))
        return out + self._stored(kind)

    def _stored(self, kind: str) -> list[Candidate]:
        """The keystore's keys of one kind for this title pair (memoised per keystore, which
        never changes; not memoised for an association that holds transferred keys)."""
        a = self.association
        attr = {"global-unicast": "ek", "global-broadcast": "bek", "dedicated": "dedicated"}[kind]

        def compute() -> list[Candidate]:
            return [Candidate(getattr(e, attr), e.ak, kind, getattr(e, attr).name)
                    for e in self._entries() if getattr(e, attr) is not None]

        if a.overrides:
            return compute()
        return self.keystore.derived(("candidates", kind, a.server_title, a.client_title),
                                     compute)

    def all_candidates(self) -> list[Candidate]:
        """Every key of the keystore (and the learned dedicated key), for 'try every key'."""
        out = self.candidates("dedicated")[:1]
        for entry in self.association.entries(self.keystore, every=True):
            for attr, kind in (("ek", "global-unicast"), ("bek", "global-broadcast"),
                               ("dedicated", "dedicated")):
                key = getattr(entry, attr)
                if key is not None:
                    out.append(Candidate(key, entry.ak, kind, key.name))
        return out

    # -- IV system title ------------------------------------------------------------------
    def system_title(self, env: Any) -> bytes | None:
        """Carried title, else the originator-system-title of an enclosing general-signing,
        else the title of the side that sent the APDU (an enclosing AARQ/RLRQ's or
        AARE/RLRE's own title first)."""
        carried = env.carried_title()
        if carried:
            return carried
        outer = _enclosing(env)
        if outer is not None and outer.apdu_name == "general-signing":
            title = outer.carried_title()
            if title:
                return title
            outer = _enclosing(outer)
        if outer is not None:
            client = outer.apdu_name in ("aarq", "rlrq")
            own = getattr(outer, "calling_ap_title" if client else "responding_ap_title", None)
            return own or self._known_title(client)
        return self._known_title(self._sent_by_client(env))

    def _known_title(self, client: bool) -> bytes | None:
        """The client's (or server's) title: the association's, else the keystore's
        (`client_system_title` / `system_title`, e.g. from --client-title/--server-title)."""
        title = self.association.client_title if client else self.association.server_title
        if title is None:
            attr = "client_system_title" if client else "system_title"
            title = next((getattr(e, attr) for e in self.keystore.entries
                          if getattr(e, attr) is not None), None)
        return title

    def _sent_by_client(self, env: Any) -> bool:
        if self.direction in ("client->server", "server->client"):
            return self.direction == "client->server"
        return getattr(env, "plain_tag", None) in REQUEST_TAGS

    # -- deciphering ----------------------------------------------------------------------
    def _primary(self, env: Any, kind: str) -> list[Candidate]:
        """Keys the envelope itself names: by tag family, or by general-ciphering key-info."""
        if kind == "wrapped":
            return self._unwrapped(env)
        if kind == "agreed":
            return self._agreed(env)
        return self.candidates(kind)

    def _unwrapped(self, env: Any) -> list[Candidate]:
        from .wrap import UnwrapError, unwrap_key

        out = []
        data = bytes(env.key_info.key_ciphered_data or b"")
        for entry in self._entries():
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

    def _agreed(self, env: Any) -> list[Candidate]:
        from . import agreement

        info = env.key_info
        scheme = bytes(info.key_parameters or b"\x00")[0]
        sc = env.security_control or 0
        suite = sc & 0x0F
        originator = env.carried_title() or b""
        recipient = bytes(env.recipient_system_title or b"")
        out = []
        for entry in self._entries():
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

    def _verify_signature(self, env: Any) -> DecipherResult:
        from .agreement import verify_raw

        res = DecipherResult()
        originator = env.carried_title()
        signature = bytes(env.signature or b"")
        keys = []
        for entry in self.keystore.entries:
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

    def decipher(self, env: Any) -> DecipherResult:
        """Decipher one envelope; findings go on the envelope packet."""
        if getattr(env, "family", "") == "signing":
            return self._verify_signature(env)
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
        primary = self._primary(env, kind)
        if not primary:
            if kind == "dedicated":
                add_finding(env, "warning", "security.no-dedicated-key",
                            "ded-ciphered APDU without a known dedicated key (no AARQ with a"
                            " deciphered dedicated key in this association, none in the keystore)")
            else:
                add_finding(env, "note", "security.no-key", f"no {kind} key for this APDU")
        extra = _general_aad(env)
        opening = _opening(sc, title, ic, payload)
        with_extra = _opening(sc, title, ic, payload, extra) if extra else None
        order = self._search_order(primary, title) if len(primary) > 1 else primary
        likely = getattr(env, "plain_tag", None) if sc & 0x30 == 0x30 and not extra else None
        for cand in _likely_first(order, opening, likely):
            plain = _try_general(env, opening, with_extra, cand)
            seen = None if plain is None or sc_authenticated(sc) else _plausible(plain)
            if plain is not None and (sc_authenticated(sc) or seen is not None):
                res.plaintext, res.key_name = plain, self._canonical(cand, primary).name
                res.packet = seen[1] if seen is not None else None
                res.is_apdu = seen is None or seen[1] is not None
                res.tag_verified = True if sc_authenticated(sc) else None
                return self._finish(env, res)
        if sc_authenticated(sc) and primary and all(c.ak is None for c in primary):
            return self._without_ak(env, res, primary, sc, title, ic, payload)
        if sc_authenticated(sc):
            for cand in self.all_candidates():
                if any(cand.key == p.key and cand.ak == p.ak for p in primary):
                    continue
                plain = _try(opening, cand)
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
            try:
                res.plaintext = keystream_decrypt(sc, cand.key, title, ic, payload)
            except CipherInputError as exc:
                add_finding(env, "error", "security.cannot-decipher",
                            f"{cand.name}: {exc}")
                return res
            res.key_name = cand.name
            add_finding(env, "warning", "security.not-well-formed",
                        f"encryption only (no tag): {cand.name} deciphers to bytes that do not"
                        " parse as an APDU; the key is probably wrong")
            return self._finish(env, res)
        return res

    def _without_ak(self, env: Any, res: DecipherResult, primary: list[Candidate], sc: int,
                    title: bytes, ic: int, payload: bytes) -> DecipherResult:
        """Authenticated APDU but no authentication key known: decipher, leave the tag unchecked."""
        cand = self._keystream(res, primary, sc, title, ic, payload)
        if cand is not None:
            add_finding(env, "note", "security.tag-not-checked",
                        f"no authentication key for {cand.name}: deciphered, tag not checked")
            return self._finish(env, res)
        add_finding(env, "error", "security.not-well-formed",
                    "no authentication key, and no key deciphers to a well-formed APDU")
        return res

    def _keystream_fallback(self, env: Any, res: DecipherResult, primary: list[Candidate],
                            sc: int, title: bytes, ic: int, payload: bytes) -> DecipherResult:
        """Every tag failed: say whether the encryption key still gives a sensible plaintext."""
        res.tag_verified = False
        cand = self._keystream(res, primary, sc, title, ic, payload)
        if cand is not None:
            add_finding(env, "error", "security.tag-failed-ak-wrong",
                        f"tag failed, but {cand.name} deciphers to a well-formed"
                        f" {res.looks_like}: the AK or the AAD is wrong")
            res.tag_verified = False
            return self._finish(env, res)
        add_finding(env, "error", "security.tag-failed",
                    "tag verification failed: no key verified (tried every candidate key)")
        return res

    @staticmethod
    def _keystream(res: DecipherResult, primary: list[Candidate], sc: int, title: bytes,
                   ic: int, payload: bytes) -> Candidate | None:
        """The first candidate whose keystream gives a plausible plaintext (kept in `res`)."""
        for cand in primary:
            try:
                plain = keystream_decrypt(sc, cand.key, title, ic, payload)
            except CipherInputError:
                continue
            seen = _plausible(plain)
            if seen is not None:
                res.plaintext, res.key_name, res.tag_verified = plain, cand.name, None
                res.packet, res.is_apdu = seen[1], seen[1] is not None
                res.looks_like = seen[0]
                return cand
        return None

    def _finish(self, env: Any, res: DecipherResult) -> DecipherResult:
        sc = env.ciphered.security_control
        if sc_compressed(sc):
            add_finding(env, "warning", "security.compressed",
                        "plaintext is V.44-compressed (SC bit 7); decompression is not"
                        " supported, the inner APDU is shown undecoded")
            res.packet, res.is_apdu = None, False
            return res
        if sc_broadcast(sc) and res.key_kind == "global-unicast":
            res.key_kind = "global-broadcast"
        return res


def _opening(sc: int, title: bytes, ic: int, payload: bytes,
             extra_aad: bytes = b"") -> Opening | None:
    """The payload ready for a key search; None when no key could open it."""
    try:
        return Opening(sc, title, ic, payload, extra_aad=extra_aad)
    except CipherInputError:
        return None


def _likely_first(order: list[Candidate], opening: Opening | None,
                  first: int | None) -> Iterator[Candidate]:
    """`order`, with the keys whose keystream does not start the plaintext with `first` (the
    envelope's inner tag) moved last: a wrong key costs one byte of keystream instead of a
    tag. Where the tag decides (SC bits 4 and 5), the key found is the one `order` finds:
    only the right key verifies, and identical keys move together."""
    if first is None or opening is None or len(order) < 2:
        yield from order
        return
    later = []
    for cand in order:
        if opening.first_byte(cand.key) == first:
            yield cand
        else:
            later.append(cand)
    yield from later


def _try(opening: Opening | None, cand: Candidate) -> bytes | None:
    """The plaintext when `cand` (with its AK) verifies, else None."""
    if opening is None or (opening.authenticated and cand.ak is None):
        return None
    try:
        return opening.verify(cand.key, cand.ak)
    except CipherInputError:
        return None


def _try_general(env: Any, opening: Opening | None, with_header: Opening | None,
                 cand: Candidate) -> bytes | None:
    """`_try` for both AAD forms of general-ciphering (without, then with the header fields);
    when a tag verifies, a note names the form that did (notes §5.4: stacks differ)."""
    plain = _try(opening, cand)
    if with_header is None or not with_header.authenticated:
        return plain
    form = "without"
    if plain is None:
        plain, form = _try(with_header, cand), "with"
    if plain is not None:
        add_finding(env, "note", "security.general-ciphering-aad",
                    f"general-ciphering: the tag verified with the AAD {form} the header"
                    " fields (transaction-id, originator-system-title, recipient-system-title,"
                    " date-time, other-information, each length-prefixed)")
    return plain


def _general_aad(env: Any) -> bytes:
    """The general-ciphering header fields as on the wire, each length-prefixed: the extra
    AAD of the Green Book's general-ciphering (in every suite; Gurux's Python library adds it
    in suites 1/2 only, its .NET library never: notes §5.4). Empty for other envelopes."""
    if getattr(env, "family", "") != "general":
        return b""
    from layers.fields import encode_length

    parts = [bytes(env.getfieldval(n) or b"") for n in (
        "transaction_id", "originator_system_title", "recipient_system_title", "date_time",
        "other_information")]
    return b"".join(encode_length(len(p)) + p for p in parts)


def _plausible(plaintext: bytes) -> tuple[str, Any] | None:
    """What a keystream plaintext looks like when it makes sense: (APDU name, its dissection),
    ("DSMR telegram ...", None) for an ASCII P1 telegram whose own CRC checks out, or None."""
    pkt = _well_formed(plaintext)
    if pkt is not None:
        return pkt.apdu_name, pkt
    if _dsmr_crc_ok(plaintext):
        return "DSMR telegram (its CRC checks out)", None
    return None


def _dsmr_crc_ok(text: bytes) -> bool:
    """DSMR P1 telegram `/...!CCCC`: CRC-16/ARC of '/' through '!' equals the 4 hex digits."""
    start, bang = text.find(b"/"), text.rfind(b"!")
    if start != 0 or bang < 0 or len(text) < bang + 5:
        return False
    crc = 0
    for b in text[: bang + 1]:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    try:
        return crc == int(text[bang + 1 : bang + 5], 16)
    except ValueError:
        return False


def _well_formed(plaintext: bytes) -> Any:
    """The dissected APDU when the bytes are a known APDU with no error finding and nothing
    left over, else None."""
    if not plaintext:
        return None
    pkt = APDU(plaintext)
    if getattr(pkt, "apdu_name", "unknown") == "unknown":
        return None
    if any(f.severity == "error" for f in findings_of(pkt)):
        return None
    from scapy.packet import Padding, Raw

    return None if pkt.haslayer(Raw) or pkt.haslayer(Padding) else pkt


#: APDUs whose carried APDU takes its IV system title from them.
_TITLE_GIVERS = frozenset({"aarq", "aare", "rlrq", "rlre", "general-signing"})


def _enclosing(pkt: Any) -> Any:
    """The nearest AARQ/AARE/RLRQ/RLRE (user-information) or general-signing (content) that
    carries this packet, if any."""
    p = getattr(pkt, "parent", None) or getattr(pkt, "underlayer", None)
    for _ in range(16):
        if p is None:
            return None
        if getattr(p, "apdu_name", "") in _TITLE_GIVERS:
            return p
        p = getattr(p, "parent", None) or getattr(p, "underlayer", None)
    return None


def encipher(plain: Any, envelope: str, *, key: SecretKey | bytes, ak: SecretKey | bytes | None,
             system_title: bytes, invocation_counter: int, security_control: int = 0x30,
             carry_title: bool = True) -> Any:
    """Build a ciphered envelope around a plaintext APDU (a Scapy packet or its bytes).

    `envelope` is an envelope's Green Book name: any `glo-*`/`ded-*` service APDU name (the
    plaintext's own family, e.g. `glo-get-request` for a get-request), `general-glo-ciphering` or
    `general-ded-ciphering`. The result is a layer packet whose `raw()` deciphers back.
    """
    from scapy.compat import raw

    from layers.apdu.base import APDU_CLASSES, TAG_NAMES
    from layers.apdu.ciphered import CipheredContent

    from .gcm import protect

    data = raw(plain) if not isinstance(plain, (bytes, bytearray)) else bytes(plain)
    tag = next((t for t, n in TAG_NAMES.items() if n == envelope), None)
    if tag is None or tag not in APDU_CLASSES or \
            getattr(APDU_CLASSES[tag], "decipher", None) is None:
        raise ValueError(f"{envelope!r} is not a ciphered envelope name")
    cls = APDU_CLASSES[tag]
    plain_tag = getattr(cls, "plain_tag", None)
    if plain_tag is not None and data[:1] != bytes([plain_tag]):
        raise ValueError(f"{envelope} carries a {TAG_NAMES.get(plain_tag)}, not tag "
                         f"0x{data[0]:02x}")
    payload = protect(security_control, key, ak, system_title, invocation_counter, data)
    tag_len = 12 if security_control & 0x10 else 0
    body, auth = (payload[:-tag_len], payload[-tag_len:]) if tag_len else (payload, b"")
    content = CipheredContent(security_control=security_control,
                              invocation_counter=invocation_counter, information=body)
    if tag_len:
        content.authentication_tag = auth
    fields: dict[str, Any] = {"ciphered_content": content}
    if envelope.startswith("general-"):
        fields["system_title"] = system_title if carry_title else b""
    return cls(**fields)
