"""The xDLMS/ACSE tag map, the APDU registry and the `APDU` dispatcher class."""

from __future__ import annotations

from typing import Any, ClassVar

from scapy.fields import ByteEnumField, StrField
from scapy.packet import Packet

from ..expert import add_finding
from ..packet import DLMSPacket

#: First-byte tag -> Green Book name (lower-kebab case), notes §3.1 and §4.1.
TAG_NAMES: dict[int, str] = {
    0x01: "initiate-request", 0x05: "read-request", 0x06: "write-request",
    0x08: "initiate-response", 0x0C: "read-response", 0x0D: "write-response",
    0x0E: "confirmed-service-error", 0x0F: "data-notification",
    0x10: "data-notification-confirm", 0x16: "unconfirmed-write-request",
    0x18: "information-report-request",
    0x60: "aarq", 0x61: "aare", 0x62: "rlrq", 0x63: "rlre",
    0xC0: "get-request", 0xC1: "set-request", 0xC2: "event-notification-request",
    0xC3: "action-request", 0xC4: "get-response", 0xC5: "set-response", 0xC7: "action-response",
    0xD8: "exception-response", 0xD9: "access-request", 0xDA: "access-response",
    0xDB: "general-glo-ciphering", 0xDC: "general-ded-ciphering", 0xDD: "general-ciphering",
    0xDF: "general-signing", 0xE0: "general-block-transfer",
    0xE6: "gateway-request", 0xE7: "gateway-response",
}

#: Plain tag -> (glo- tag, ded- tag), notes §4.1.
CIPHERED_TAGS: dict[int, tuple[int, int]] = {
    0x01: (0x21, 0x41), 0x05: (0x25, 0x45), 0x06: (0x26, 0x46), 0x08: (0x28, 0x48),
    0x0C: (0x2C, 0x4C), 0x0D: (0x2D, 0x4D), 0x0E: (0x2E, 0x4E), 0x16: (0x36, 0x56),
    0x18: (0x38, 0x58), 0xC0: (0xC8, 0xD0), 0xC1: (0xC9, 0xD1), 0xC2: (0xCA, 0xD2),
    0xC3: (0xCB, 0xD3), 0xC4: (0xCC, 0xD4), 0xC5: (0xCD, 0xD5), 0xC7: (0xCF, 0xD7),
}
for _plain, (_glo, _ded) in CIPHERED_TAGS.items():
    TAG_NAMES[_glo] = "glo-" + TAG_NAMES[_plain]
    TAG_NAMES[_ded] = "ded-" + TAG_NAMES[_plain]

#: Tag -> class implementing it (filled by `register`).
APDU_CLASSES: dict[int, type[Packet]] = {}


def register(cls: type[Packet]) -> type[Packet]:
    """Class decorator: make `APDU(b)` dispatch the default of the class's `tag` field to it.

    (Scapy turns a class attribute named like a field into that field, so the tag value is read
    from the field; it is also kept as `cls.apdu_tag`.)
    """
    tag = next(f.default for f in cls.fields_desc if f.name == "tag")
    cls.apdu_tag = tag
    if not cls.__dict__.get("apdu_name"):
        cls.apdu_name = apdu_name(tag)
    APDU_CLASSES[tag] = cls
    return cls


def apdu_name(tag: int) -> str:
    """Green Book name of a tag, or `unknown-0xNN`."""
    return TAG_NAMES.get(tag, f"unknown-0x{tag:02x}")


class APDUBase(DLMSPacket):
    """Common base of every APDU class: a `tag` class attribute and its Green Book name."""

    apdu_tag: ClassVar[int]
    apdu_name: ClassVar[str] = ""

    def mysummary(self) -> str:
        return self.apdu_name or self.name

    def post_dissection(self, pkt: Packet) -> None:
        extra = self.payload
        if type(extra).__name__ in ("Raw", "Padding") and not self.__dict__.get("findings"):
            what = self.apdu_name or self.name
            add_finding(self, "warning", "apdu.trailing-bytes",
                        f"{len(bytes(extra))} byte(s) after the end of the {what}")
        super().post_dissection(pkt)


class UnknownAPDU(APDUBase):
    """An APDU whose first byte is not in the tag map: the bytes are kept as they are."""

    name = "Unknown APDU"
    apdu_name = "unknown"
    fields_desc = [ByteEnumField("tag", 0, TAG_NAMES), StrField("data", b"")]

    def post_dissection(self, pkt: Packet) -> None:
        add_finding(self, "error", "apdu.unknown-tag",
                    f"tag 0x{self.tag:02x} is not an xDLMS/ACSE APDU")
        super().post_dissection(pkt)


#: APDUs inside APDUs (gateway, general-signing content, ACSE user-information) deeper than this
#: are not dissected: real traffic nests two or three, a flood of envelopes would exhaust the
#: stack. Deciphered plaintext is dissected apart and bounded by the tree walk instead.
MAX_NESTING = 16


def nesting_depth(parent: Packet | None) -> int:
    """How many APDUs enclose a packet whose parent or underlayer is `parent`."""
    depth = 0
    p = parent
    steps = 0
    while p is not None and steps < 4 * MAX_NESTING + 64:
        if isinstance(p, APDUBase):
            depth += 1
        p = p.parent if p.parent is not None else p.underlayer
        steps += 1
    return depth


class NestedTooDeep(APDUBase):
    """An APDU nested deeper than `MAX_NESTING` envelopes: kept as bytes, with a finding."""

    name = "APDU nested too deep"
    apdu_name = "nested-too-deep"
    fields_desc = [ByteEnumField("tag", 0, TAG_NAMES), StrField("data", b"")]

    def post_dissection(self, pkt: Packet) -> None:
        add_finding(self, "error", "apdu.too-deep",
                    f"APDU nested inside more than {MAX_NESTING} APDUs: its"
                    f" {len(self.data or b'') + 1} byte(s) are not dissected")
        super().post_dissection(pkt)


class APDU(Packet):
    """Dispatcher: `APDU(b)` returns the class registered for `b[0]` (UnknownAPDU otherwise)."""

    name = "xDLMS APDU"
    fields_desc = [ByteEnumField("tag", 0, TAG_NAMES)]

    @classmethod
    def dispatch_hook(cls, _pkt: bytes | None = None, *args: Any, **kargs: Any) -> type[Packet]:
        if not _pkt:
            return UnknownAPDU
        outer = kargs.get("_parent") or kargs.get("_underlayer")
        if outer is not None and nesting_depth(outer) >= MAX_NESTING:
            return NestedTooDeep
        found = APDU_CLASSES.get(_pkt[0], UnknownAPDU)
        if "dispatch_hook" in found.__dict__:  # a CHOICE: its own hook picks the variant
            return found.dispatch_hook(_pkt, *args, **kargs)
        return found
