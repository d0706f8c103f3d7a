"""IEC 61334-4-32 LLC header in front of an APDU (DLMS over S-FSK PLC, and PLC sniffers that
forward it over UDP): destination LSAP (90 for DLMS), source LSAP, control, then the APDU.

`LLC432(b)` dissects the three header bytes and hands the rest to the `APDU` dispatcher.
"""

from __future__ import annotations

from scapy.fields import XByteField
from scapy.packet import Packet

from .apdu.base import APDU, TAG_NAMES
from .expert import add_finding
from .packet import DLMSPacket

DLMS_LSAP = 0x90
HEADER_LEN = 3


class LLC432(DLMSPacket):
    """The 3-byte IEC 61334-4-32 LLC header; its payload is the APDU."""

    name = "IEC 61334-4-32 LLC"
    fields_desc = [
        XByteField("destination_lsap", DLMS_LSAP),
        XByteField("source_lsap", 0x01),
        XByteField("control", 0x01),
    ]

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        return APDU

    def post_dissect(self, s: bytes) -> bytes:
        if "control" not in self.fields:
            return s
        if self.destination_lsap != DLMS_LSAP:
            add_finding(self, "warning", "llc432.unexpected-lsap",
                        f"destination LSAP {self.destination_lsap:02x}, expected 90 (DLMS)")
        if not s:
            add_finding(self, "warning", "llc432.no-apdu", "LLC header with no APDU behind it")
        return s

    @property
    def apdu(self) -> Packet | None:
        return self.payload or None

    def mysummary(self) -> str:
        return (f"4-32 LLC {self.destination_lsap:02x} {self.source_lsap:02x}"
                f" {self.control:02x}")


def looks_like_llc432(data: bytes) -> bool:
    """An IEC 61334-4-32 LLC header (90 xx xx) followed by a known APDU tag."""
    return (len(data) > HEADER_LEN and data[0] == DLMS_LSAP
            and data[HEADER_LEN] in TAG_NAMES)


__all__ = ["DLMS_LSAP", "HEADER_LEN", "LLC432", "looks_like_llc432"]
