"""How one envelope's key search runs: an ordered list of strategies, each returning a result or
nothing, over one opening of the payload (IV, tag split) that every key is tried on.

A key search never skips a key: keys are reordered (likely ones first), so the key found is
the one the plain order finds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from layers.apdu.base import APDU
from layers.expert import Finding, add_finding, findings_of
from layers.security import sc_authenticated, sc_broadcast, sc_compressed

from .gcm import CipherInputError, Opening, keystream_decrypt
from .secret import SecretKey


@dataclass(slots=True)
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


@dataclass(slots=True)
class Search:
    """One envelope's key search: everything the strategies share, computed once."""

    env: Any
    res: DecipherResult
    sc: int
    ic: int
    title: bytes
    payload: bytes
    kind: str
    primary: list[Candidate]
    order: list[Candidate]
    every: Callable[[], list[Candidate]]
    opening: Opening | None
    with_header: Opening | None
    likely: int | None

    @property
    def authenticated(self) -> bool:
        return sc_authenticated(self.sc)

    def canonical(self, found: Candidate) -> Candidate:
        return canonical(found, self.primary)


def canonical(found: Candidate, primary: list[Candidate]) -> Candidate:
    """The first candidate of `primary` (the plain order) with the key pair that verified: a
    key is named as the plain order names it, whatever order found it."""
    return next((c for c in primary if c.key == found.key and c.ak == found.ak), found)


Strategy = Callable[[Search], DecipherResult | None]


def tag_family(s: Search) -> DecipherResult | None:
    """The keys the envelope names (its tag family, or its key-info), likely ones first."""
    res = s.res
    for cand in _likely_first(s.order, s.opening, s.likely):
        plain = _try_general(s.env, s.opening, s.with_header, cand)
        seen = None if plain is None or s.authenticated else _plausible(plain)
        if plain is not None and (s.authenticated or seen is not None):
            res.plaintext, res.key_name = plain, s.canonical(cand).name
            res.packet = seen[1] if seen is not None else None
            res.is_apdu = seen is None or seen[1] is not None
            res.tag_verified = True if s.authenticated else None
            return finish(s.env, res)
    return None


def without_ak(s: Search) -> DecipherResult | None:
    """Authenticated, but no authentication key known: decipher, leave the tag unchecked."""
    if not (s.authenticated and s.primary and all(c.ak is None for c in s.primary)):
        return None
    cand = _keystream(s.res, s.primary, s.sc, s.title, s.ic, s.payload)
    if cand is not None:
        add_finding(s.env, "note", "security.tag-not-checked",
                    f"no authentication key for {cand.name}: deciphered, tag not checked")
        return finish(s.env, s.res)
    add_finding(s.env, "error", "security.not-well-formed",
                "no authentication key, and no key deciphers to a well-formed APDU")
    return s.res


def wrong_family(s: Search) -> DecipherResult | None:
    """Every other key of the keystore: one that verifies is named, with an error (the tag
    implied another key)."""
    if not s.authenticated:
        return None
    res = s.res
    for cand in s.every():
        if any(cand.key == p.key and cand.ak == p.ak for p in s.primary):
            continue
        plain = _try(s.opening, cand)
        if plain is not None:
            res.plaintext, res.key_name, res.tag_verified = plain, cand.name, True
            add_finding(s.env, "error", "security.wrong-key-family",
                        f"the tag implies the {s.kind} key, but it verified with"
                        f" {cand.name} ({cand.kind})")
            res.key_kind = cand.kind
            return finish(s.env, res)
    return None


def failed_tag(s: Search) -> DecipherResult | None:
    """Every tag failed: say whether the encryption key still gives a sensible plaintext."""
    if not (s.authenticated and s.primary):
        return None
    res = s.res
    res.tag_verified = False
    cand = _keystream(res, s.primary, s.sc, s.title, s.ic, s.payload)
    if cand is not None:
        add_finding(s.env, "error", "security.tag-failed-ak-wrong",
                    f"tag failed, but {cand.name} deciphers to a well-formed"
                    f" {res.looks_like}: the AK or the AAD is wrong")
        res.tag_verified = False
        return finish(s.env, res)
    add_finding(s.env, "error", "security.tag-failed",
                "tag verification failed: no key verified (tried every candidate key)")
    return res


def encryption_only(s: Search) -> DecipherResult | None:
    """No tag and no key gives a well-formed plaintext: the first key's, with a warning."""
    if s.authenticated or not s.primary:
        return None
    res = s.res
    cand = s.primary[0]
    try:
        res.plaintext = keystream_decrypt(s.sc, cand.key, s.title, s.ic, s.payload)
    except CipherInputError as exc:
        add_finding(s.env, "error", "security.cannot-decipher", f"{cand.name}: {exc}")
        return res
    res.key_name = cand.name
    add_finding(s.env, "warning", "security.not-well-formed",
                f"encryption only (no tag): {cand.name} deciphers to bytes that do not parse"
                " as an APDU; the key is probably wrong")
    return finish(s.env, res)


#: The search, in order: the first strategy that gives a result ends it.
STRATEGIES: tuple[Strategy, ...] = (tag_family, without_ak, wrong_family, failed_tag,
                                    encryption_only)


def run(search: Search) -> DecipherResult:
    """The first result of `STRATEGIES`, else the envelope's result as it stands."""
    for strategy in STRATEGIES:
        found = strategy(search)
        if found is not None:
            return found
    return search.res


def opening(sc: int, title: bytes, ic: int, payload: bytes,
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


def general_aad(env: Any) -> bytes:
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


def finish(env: Any, res: DecipherResult) -> DecipherResult:
    """The result as the layers take it: broadcast named, compressed plaintext kept as bytes."""
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
