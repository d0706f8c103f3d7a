"""Ciphered APDU envelopes, structurally: glo-/ded- service APDUs, general-glo/ded-ciphering,
general-ciphering and general-signing (notes §4).

Without keys these layers show the envelope as it is on the wire. A key context (duck-typed,
supplied by `keys`, handed over as `key_context=` when dissecting) deciphers them: see
`CipheredAPDU.decipher`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from scapy.fields import (
    ByteEnumField,
    ConditionalField,
    IntField,
    PacketField,
    XByteField,
)
from scapy.packet import Packet

from ..expert import add_finding
from ..fields import (
    BoundedPacketLenField,
    OctetsField,
    VarLenField,
    field_value,
    length_prefixed,
)
from ..packet import DLMSElement
from ..security import TAG_LENGTH, SecurityControlField, sc_authenticated, sc_broadcast
from .base import APDU, CIPHERED_TAGS, TAG_NAMES, APDUBase, register


def _authenticated(pkt: Packet) -> bool:
    return sc_authenticated(field_value(pkt, "security_control") or 0)


def _tag_len(pkt: Packet) -> int:
    return TAG_LENGTH if _authenticated(pkt) else 0


class CipheredContent(DLMSElement):
    """Security header (security_control, invocation_counter), information, authentication tag.

    `information` is the ciphertext (or the clear APDU under authentication only); the 12-byte
    `authentication_tag` is present when the security control says authenticated.
    """

    name = "ciphered-content"
    fields_desc = [
        SecurityControlField("security_control", 0x30),
        IntField("invocation_counter", 0),
        OctetsField("information", b"",
                    length_from=lambda p: max(0, p.__dict__.get("content_length", 0) - 5
                                              - _tag_len(p))),
        ConditionalField(OctetsField("authentication_tag", b"", length_from=_tag_len),
                         _authenticated),
    ]

    def pre_dissect(self, s: bytes) -> bytes:
        self.__dict__["content_length"] = len(s)
        if len(s) < 5:
            add_finding(self, "error", "security.short-header",
                        f"ciphered content of {len(s)} bytes has no complete security header")
        elif len(s) < 5 + (TAG_LENGTH if s[0] & 0x10 else 0):
            add_finding(self, "error", "security.short-tag",
                        "security control says authenticated but the content is shorter than"
                        " the 12-byte tag")
        return s


def _content_field(name: str = "ciphered_content") -> list:
    return [
        VarLenField(f"{name}_length", None, length_of=name),
        BoundedPacketLenField(name, CipheredContent(), CipheredContent,
                              length_from=lambda p, _n=f"{name}_length": field_value(p, _n)),
    ]


class CipheredAPDU(APDUBase):
    """Base of every ciphered envelope.

    `family` says which key the tag implies: `glo` (global unicast, or broadcast with SC bit 6),
    `ded` (dedicated key of the association), `general` (general-ciphering key-info) or
    `signing` (general-signing: a signature around a content APDU).
    """

    family: ClassVar[str] = ""
    plain_tag: ClassVar[int | None] = None

    # Views over the ciphered content, so every envelope reads the same way.
    @property
    def ciphered(self) -> CipheredContent | None:
        c = self.fields.get("ciphered_content")
        return c if isinstance(c, CipheredContent) else None

    @property
    def security_control(self) -> int | None:
        c = self.ciphered
        return field_value(c, "security_control") if c is not None else None

    @property
    def invocation_counter(self) -> int | None:
        c = self.ciphered
        return field_value(c, "invocation_counter") if c is not None else None

    def carried_title(self) -> bytes | None:
        """The originator system title carried in the APDU (DB/DC/DD/DF), else None."""
        return None

    def implied_key_kind(self) -> str | None:
        """Key kind the tag and security control imply (DESIGN.md `security.key_kind` values)."""
        sc = self.security_control or 0
        if self.family == "glo":
            return "global-broadcast" if sc_broadcast(sc) else "global-unicast"
        if self.family == "ded":
            return "dedicated"
        return None

    def decipher(self, ctx: Any) -> Any:
        """Decipher through a key context: `ctx.decipher(self)` returns a result whose `plaintext`
        is dissected here (result.packet) and kept as `self.deciphered`."""
        result = ctx.decipher(self)
        if result is not None and getattr(result, "plaintext", None) is not None \
                and getattr(result, "packet", None) is None and getattr(result, "is_apdu", True):
            result.packet = APDU(result.plaintext)
        self.__dict__["deciphered"] = result
        return result

    @property
    def deciphered(self) -> Any:
        return self.__dict__.get("deciphered")

    def mysummary(self) -> str:
        c = self.ciphered
        if c is None:
            return self.apdu_name
        return f"{self.apdu_name} SC={c.security_control:02X} IC={c.invocation_counter}"


def _service_envelope(tag: int, plain: int, family: str) -> type[CipheredAPDU]:
    name = TAG_NAMES[tag]
    cls_name = "".join(w.capitalize() for w in name.split("-"))
    cls = type(cls_name, (CipheredAPDU,), {
        "__doc__": f"{name} (0x{tag:02X}): {TAG_NAMES[plain]} protected with the "
                   f"{'global' if family == 'glo' else 'dedicated'} key.",
        "name": name,

        "apdu_name": name,
        "family": family,
        "plain_tag": plain,
        "fields_desc": [ByteEnumField("tag", tag, TAG_NAMES), *_content_field()],
    })
    return register(cls)


#: Every glo-/ded- service envelope class, by tag.
SERVICE_ENVELOPES: dict[int, type[CipheredAPDU]] = {}
for _plain, (_glo, _ded) in CIPHERED_TAGS.items():
    SERVICE_ENVELOPES[_glo] = _service_envelope(_glo, _plain, "glo")
    SERVICE_ENVELOPES[_ded] = _service_envelope(_ded, _plain, "ded")
globals().update({c.__name__: c for c in SERVICE_ENVELOPES.values()})


class _TitledEnvelope(CipheredAPDU):
    def carried_title(self) -> bytes | None:
        title = self.fields.get("system_title")
        return title or None


def _titled_envelope(tag: int, family: str, doc: str) -> type[CipheredAPDU]:
    name = TAG_NAMES[tag]
    return register(type("".join(w.capitalize() for w in name.split("-")), (_TitledEnvelope,), {
        "__doc__": doc, "name": name, "apdu_name": name, "family": family,
        "fields_desc": [ByteEnumField("tag", tag, TAG_NAMES), *length_prefixed("system_title"),
                        *_content_field()],
    }))


GeneralGloCiphering = _titled_envelope(
    0xDB, "glo", "general-glo-ciphering (0xDB): system title of the originator, then ciphered"
    " content.")
GeneralDedCiphering = _titled_envelope(
    0xDC, "ded", "general-ded-ciphering (0xDC): as general-glo-ciphering, under the dedicated"
    " key.")


KEY_INFO_CHOICES = {0: "identified-key", 1: "wrapped-key", 2: "agreed-key"}
KEY_IDS = {0: "global-unicast-encryption-key", 1: "global-broadcast-encryption-key"}
KEK_IDS = {0: "master-key"}
KEY_PARAMETERS = {1: "one-pass-diffie-hellman C(1e,1s)", 2: "static-unified-model C(0e,2s)"}


class KeyInfo(DLMSElement):
    """Key-Info CHOICE of general-ciphering: identified, wrapped (RFC 3394) or agreed (ECDH) key."""

    name = "key-info"
    fields_desc = [
        ByteEnumField("key_info_choice", 0, KEY_INFO_CHOICES),
        ConditionalField(ByteEnumField("key_id", 0, KEY_IDS), lambda p: p.key_info_choice == 0),
        ConditionalField(ByteEnumField("kek_id", 0, KEK_IDS), lambda p: p.key_info_choice == 1),
        ConditionalField(VarLenField("key_parameters_length", None, length_of="key_parameters"),
                         lambda p: p.key_info_choice == 2),
        ConditionalField(OctetsField("key_parameters", b"\x01",
                                     length_from=lambda p: p.key_parameters_length),
                         lambda p: p.key_info_choice == 2),
        ConditionalField(VarLenField("key_ciphered_data_length", None,
                                     length_of="key_ciphered_data"),
                         lambda p: p.key_info_choice in (1, 2)),
        ConditionalField(OctetsField("key_ciphered_data", b"",
                                     length_from=lambda p: p.key_ciphered_data_length),
                         lambda p: p.key_info_choice in (1, 2)),
    ]

    def mysummary(self) -> str:
        return KEY_INFO_CHOICES.get(self.key_info_choice, f"choice {self.key_info_choice}")


def _header_fields() -> list:
    return [*length_prefixed("transaction_id"), *length_prefixed("originator_system_title"),
            *length_prefixed("recipient_system_title"), *length_prefixed("date_time"),
            *length_prefixed("other_information")]


@register
class GeneralCiphering(CipheredAPDU):
    """general-ciphering (0xDD): header, optional key-info, ciphered content (notes §4.3)."""

    name = "general-ciphering"
    apdu_name = "general-ciphering"
    family = "general"
    fields_desc = [
        ByteEnumField("tag", 0xDD, TAG_NAMES),
        *_header_fields(),
        XByteField("key_info_present", 0),
        ConditionalField(PacketField("key_info", KeyInfo(), KeyInfo),
                         lambda p: p.key_info_present),
        *_content_field(),
    ]

    def carried_title(self) -> bytes | None:
        return self.fields.get("originator_system_title") or None

    def implied_key_kind(self) -> str | None:
        info = self.fields.get("key_info") if self.key_info_present else None
        if info is None:
            return None
        if info.key_info_choice == 0:
            return "global-broadcast" if info.key_id == 1 else "global-unicast"
        return {1: "wrapped", 2: "agreed"}.get(info.key_info_choice)


@register
class GeneralSigning(CipheredAPDU):
    """general-signing (0xDF): header, a content APDU (dissected), and an ECDSA signature."""

    name = "general-signing"
    apdu_name = "general-signing"
    family = "signing"
    fields_desc = [
        ByteEnumField("tag", 0xDF, TAG_NAMES),
        *_header_fields(),
        VarLenField("content_length", None, length_of="content"),
        BoundedPacketLenField("content", None, APDU, length_from=lambda p: p.content_length),
        *length_prefixed("signature"),
    ]

    def carried_title(self) -> bytes | None:
        return self.fields.get("originator_system_title") or None

    def signed_bytes(self) -> bytes:
        """What the signature covers: the bytes after the tag through other-information, then the
        content without its length prefix (notes §4.4)."""
        from scapy.compat import raw

        from ..fields import encode_length

        whole = raw(self)
        content = raw(self.content) if self.content is not None else b""
        signature = self.signature or b""
        tail = len(encode_length(len(content))) + len(content) \
            + len(encode_length(len(signature))) + len(signature)
        return whole[1 : len(whole) - tail] + content

    def mysummary(self) -> str:
        inner = self.content.mysummary() if self.content is not None else "no content"
        return f"general-signing around {inner}"


__all__ = [
    "SERVICE_ENVELOPES",
    "CipheredAPDU",
    "CipheredContent",
    "GeneralCiphering",
    "GeneralDedCiphering",
    "GeneralGloCiphering",
    "GeneralSigning",
    "KeyInfo",
    "NonStandardGloCiphering",
]


@register
class NonStandardGloCiphering(CipheredAPDU):
    """Tag 0x00 followed by a glo- style security header: not a Green Book APDU.

    Gurux's library sends ciphered access-request/access-response this way (the Green Book has
    no glo- tag for them: they travel in general-glo-ciphering). Shown, flagged, and deciphered
    with the global key like a glo- APDU so the plaintext is not lost.
    """

    name = "non-standard ciphered APDU (tag 0x00)"
    apdu_name = "nonstandard-glo-ciphering"
    family = "glo"
    fields_desc = [ByteEnumField("tag", 0x00, TAG_NAMES), *_content_field()]

    def post_dissection(self, pkt: Packet) -> None:
        add_finding(self, "warning", "apdu.non-standard-tag",
                    "tag 0x00 is not an xDLMS APDU: a glo-style ciphered APDU under tag 0x00 (as"
                    " Gurux sends access-request/response); the Green Book carries those in"
                    " general-glo-ciphering")
        super().post_dissection(pkt)
