"""The key context a ciphered layer deciphers through (duck-typed, like Scapy TLS's tls_session).

`KeyContext.decipher(envelope)` picks the key from the tag family (never from guessed state),
the IV system title from the envelope or the association, verifies the tag, and reports which key
protected the APDU. Wrong keys are findings, never exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from layers.expert import add_finding
from layers.security import sc_authenticated, sc_encrypted

from .general import agreed_candidates, unwrapped_candidates, verify_signature
from .keystore import Keystore, MeterKeys
from .search import Candidate, DecipherResult, Search, finish, general_aad, opening, run
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
            return unwrapped_candidates(env, self._entries())
        if kind == "agreed":
            return agreed_candidates(env, self._entries())
        return self.candidates(kind)

    def decipher(self, env: Any) -> DecipherResult:
        """Decipher one envelope; findings go on the envelope packet."""
        if getattr(env, "family", "") == "signing":
            return verify_signature(env, self.keystore.entries)
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
            return finish(env, res)
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
        extra = general_aad(env)
        return run(Search(
            env, res, sc, ic, title, payload, kind, primary,
            order=self._search_order(primary, title) if len(primary) > 1 else primary,
            every=self.all_candidates, opening=opening(sc, title, ic, payload),
            with_header=opening(sc, title, ic, payload, extra) if extra else None,
            likely=getattr(env, "plain_tag", None) if sc & 0x30 == 0x30 and not extra
            else None))


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
