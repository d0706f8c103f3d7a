"""HDLC frame format type 3 (IEC 62056-46): addresses, control, HCS/FCS, LLC, SNRM/UA parameters."""

from __future__ import annotations

from typing import Any

from scapy.fields import (
    BitField,
    ByteEnumField,
    ByteField,
    ConditionalField,
    Field,
    PacketLenField,
    PacketListField,
    XBitField,
    XByteField,
    XLEShortField,
)
from scapy.packet import Packet, Raw

from .apdu.base import APDU
from .crc import crc16
from .expert import add_finding
from .fields import OctetsField, VarLenField, field_value
from .hdlc_bytes import (
    FLAG,
    LLC_REQUEST,
    LLC_RESPONSE,
    address_length,
    control_kind,
    decode_address,
    describe_address,
    describe_control,
    encode_address,
)
from .packet import DLMSElement, DLMSPacket


class HDLCAddressField(Field[bytes, bytes]):
    """An address of 1, 2 or 4 bytes whose last byte has bit 0 set (the extension bit).

    Build from bytes, an int (1-byte address: client SAP or server upper address) or a tuple
    (upper, lower) for a server address of 2 or 4 bytes.
    """

    def __init__(self, name: str, default: Any) -> None:
        super().__init__(name, default)

    def any2i(self, pkt: Packet | None, x: Any) -> bytes:
        if isinstance(x, int):
            return encode_address(x)
        if isinstance(x, tuple):
            return encode_address(*x)
        return x

    def addfield(self, pkt: Packet, s: bytes, val: bytes | None) -> bytes:
        return s + (val or b"")

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, bytes]:
        size = address_length(s, 0, len(s), strict=False)
        if not size:
            raise ValueError("no address byte with the extension bit within 4 bytes")
        return s[size:], s[:size]

    def i2len(self, pkt: Packet, x: bytes | None) -> int:
        return len(x or b"")

    def i2repr(self, pkt: Packet, x: bytes | None) -> str:
        return f"{(x or b'').hex()} ({describe_address(x or b'')})"


class HDLCControlField(XByteField):
    """The control byte, shown decoded (I N(S)/N(R), RR, SNRM, UA, ...)."""

    def i2repr(self, pkt: Packet, x: int | None) -> str:
        return "None" if x is None else f"0x{x:02x} ({describe_control(x)})"


HDLC_PARAMETERS = {0x05: "max-info-field-length-transmit", 0x06: "max-info-field-length-receive",
                   0x07: "window-size-transmit", 0x08: "window-size-receive"}


class IntBytesField(OctetsField):
    """A big-endian unsigned value of the length its length field gives (shown as a number)."""

    def any2i(self, pkt: Packet | None, x: Any) -> bytes:
        if isinstance(x, int):
            return x.to_bytes(1 if x < 0x100 else 2 if x < 0x10000 else 4, "big")
        return super().any2i(pkt, x)

    def i2repr(self, pkt: Packet, x: bytes) -> str:
        return str(int.from_bytes(x, "big")) if x else "(empty)"


class HDLCParameter(DLMSElement):
    """One negotiation parameter of SNRM/UA: id, length, value."""

    name = "HDLC parameter"
    fields_desc = [
        ByteEnumField("parameter_id", 0x05, HDLC_PARAMETERS),
        VarLenField("parameter_length", None, length_of="value"),
        IntBytesField("value", b"\x80", length_from=lambda p: p.parameter_length),
    ]


class HDLCParameters(DLMSElement):
    """SNRM/UA information field: format 81, group 80, group length, parameters."""

    name = "HDLC parameter negotiation"
    fields_desc = [
        XByteField("format_id", 0x81),
        XByteField("group_id", 0x80),
        VarLenField("group_length", None, length_of="parameters"),
        PacketListField("parameters", [], HDLCParameter,
                        length_from=lambda p: p.group_length),
    ]


class LLC(DLMSPacket):
    """IEC 8802-2 LLC header of an HDLC I/UI frame: E6 E6 00 (command) or E6 E7 00 (response).

    Its payload is the APDU, or an `HDLCSegment` when the frame's segmentation bit is set.
    """

    name = "LLC"
    fields_desc = [
        XByteField("dsap", 0xE6),
        XByteField("ssap", 0xE6),
        XByteField("quality", 0x00),
    ]

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        parent = self.parent
        if parent is not None and getattr(parent, "segmentation", 0):
            return HDLCSegment
        return APDU

    def mysummary(self) -> str:
        return "LLC response" if self.ssap == 0xE7 else "LLC command"


class HDLCSegment(Raw):
    """Part of an APDU split across HDLC frames; the reassembler joins the segments."""

    name = "HDLC segment"


def _info_class(pkt: Packet, data: bytes) -> Packet:
    kind = control_kind(pkt.control if pkt.control is not None else 0x10)
    if kind in ("SNRM", "UA") and data[:2] == b"\x81\x80":
        return HDLCParameters(data, _parent=pkt)
    if kind in ("I", "UI") and data[:3] in (LLC_REQUEST, LLC_RESPONSE):
        return LLC(data, _parent=pkt, stop_dissection_after=pkt.stop_dissection_after)
    return HDLCSegment(data)


class HDLCInformationField(PacketLenField):
    """The information field: LLC+APDU, SNRM/UA parameters, or a raw segment."""

    def m2i(self, pkt: Packet, m: bytes) -> Packet:
        return _info_class(pkt, m)


def _header_len(pkt: Packet) -> int:
    """Bytes from the format field through the control byte."""
    return 3 + len(field_value(pkt, "destination") or b"") + len(field_value(pkt, "source") or b"")


def _has_information(pkt: Packet) -> bool:
    info = pkt.fields.get("information")
    if info is not None:
        return len(info) > 0 if isinstance(info, (bytes, bytearray)) else True
    length = field_value(pkt, "length")
    return length is not None and length > _header_len(pkt) + 2


def _information_len(pkt: Packet) -> int:
    return max(0, (field_value(pkt, "length") or 0) - _header_len(pkt) - 4)


class HDLC(DLMSPacket):
    """An HDLC frame, flag to flag. Length, HCS and FCS are computed on build when left None."""

    name = "HDLC"
    fields_desc = [
        XByteField("flag", FLAG),
        XBitField("frame_format", 0xA, 4),
        BitField("segmentation", 0, 1),
        BitField("length", None, 11),
        HDLCAddressField("destination", b"\x03"),
        HDLCAddressField("source", b"\x21"),
        HDLCControlField("control", 0x10),
        ConditionalField(XLEShortField("hcs", None), _has_information),
        ConditionalField(HDLCInformationField("information", None, Raw,
                                              length_from=_information_len),
                         _has_information),
        XLEShortField("fcs", None),
        XByteField("closing_flag", FLAG),
    ]

    def pre_dissect(self, s: bytes) -> bytes:
        self.__dict__["wire"] = s
        return s

    def post_dissect(self, s: bytes) -> bytes:
        self._check(self.__dict__.pop("wire", b""))
        return s

    def _check(self, wire: bytes) -> None:
        """HCS, FCS, flags, format type and length against the bytes on the wire."""
        f = self.fields
        self.__dict__["hcs_ok"] = self.__dict__["fcs_ok"] = None
        length, fcs_wire = f.get("length"), f.get("fcs")
        if length is None or fcs_wire is None:
            return
        if f.get("flag") != FLAG or f.get("closing_flag") != FLAG:
            add_finding(self, "error", "hdlc.bad-flag", "frame does not start and end with 7E")
        if f.get("frame_format") != 0xA:
            add_finding(self, "error", "hdlc.bad-format",
                        f"frame format type {f.get('frame_format'):X}, expected A (type 3)")
        if len(wire) < length + 2:
            add_finding(self, "error", "hdlc.truncated",
                        f"length field says {length} bytes, {max(0, len(wire) - 2)} present")
            return
        hdr = _header_len(self)
        control = f.get("control") or 0
        informed = _has_information(self)
        if not informed and control_kind(control) == "I":
            add_finding(self, "warning", "hdlc.empty-i-frame",
                        f"I frame N(S)={(control >> 1) & 7} without an information field:"
                        " an I frame carries (part of) an APDU")
        if informed:
            hcs = crc16(wire[1 : 1 + hdr])
            self.__dict__["hcs_ok"] = ok = hcs == f.get("hcs")
            if not ok:
                add_finding(self, "error", "hdlc.bad-hcs",
                            f"HCS {f.get('hcs'):04x} wrong, computed {hcs:04x}")
        fcs = crc16(wire[1 : length - 1])
        self.__dict__["fcs_ok"] = fcs == fcs_wire
        if fcs != fcs_wire:
            add_finding(self, "error", "hdlc.bad-fcs",
                        f"FCS {fcs_wire:04x} wrong, computed {fcs:04x}")

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s

    def post_build(self, p: bytes, pay: bytes) -> bytes:
        buf = bytearray(p)
        if self.length is None:
            n = len(buf) - 2
            buf[1] = (buf[1] & 0xF8) | (n >> 8 & 0x07)
            buf[2] = n & 0xFF
        hdr = _header_len(self)
        if _has_information(self) and self.hcs is None:
            buf[1 + hdr : 3 + hdr] = crc16(bytes(buf[1 : 1 + hdr])).to_bytes(2, "little")
        if self.fcs is None:
            buf[-3:-1] = crc16(bytes(buf[1:-3])).to_bytes(2, "little")
        return bytes(buf) + pay

    # Views used by the dissector and in interactive sessions.
    @property
    def kind(self) -> str:
        return control_kind(self.control)

    @property
    def fcs_verified(self) -> bool | None:
        """Whether the FCS matched the frame on the wire (None: not dissected, or too short)."""
        return self.__dict__.get("fcs_ok")

    @property
    def apdu(self) -> Packet | None:
        """The APDU carried by a complete (unsegmented) I/UI frame, else None."""
        info = self.fields.get("information")
        if isinstance(info, LLC) and not self.segmentation:
            pay = info.payload
            return None if isinstance(pay, (Raw,)) or not pay else pay
        return None

    def mysummary(self) -> str:
        seg = " segmented" if self.segmentation else ""
        return (f"HDLC {describe_address(self.source)} -> {describe_address(self.destination)} "
                f"{describe_control(self.control)}{seg}")


HDLC_ADDRESS_ROLES = {"client": "1-byte client SAP", "server": "upper (logical) / lower (physical)"}

__all__ = [
    "HDLC",
    "LLC",
    "ByteField",
    "HDLCParameter",
    "HDLCParameters",
    "HDLCSegment",
    "control_kind",
    "decode_address",
    "describe_address",
    "describe_control",
    "encode_address",
]
