"""IEC 62056-47 wrapper (DLMS/COSEM over TCP and UDP, port 4059)."""

from __future__ import annotations

from scapy.fields import ShortField, XShortField
from scapy.layers.inet import TCP, UDP
from scapy.packet import Packet, bind_layers

from .apdu.base import APDU
from .expert import add_finding
from .fields import field_value
from .packet import DLMSPacket

DLMS_PORT = 4059

#: Reserved wPort / SAP numbers (client side, server side).
WPORT_NAMES = {0: "no-station", 1: "management", 16: "public-client", 0x7F: "all-station"}


class Wrapper(DLMSPacket):
    """Wrapper header: version, source and destination wPort, APDU length; payload is the APDU."""

    name = "DLMS wrapper"
    fields_desc = [
        XShortField("version", 0x0001),
        ShortField("source_wport", 16),
        ShortField("destination_wport", 1),
        ShortField("length", None),
    ]

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        return APDU

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        length = field_value(self, "length")
        if length is None:
            return s, b""
        if len(s) < length:
            add_finding(self, "error", "wrapper.truncated",
                        f"length field says {length} bytes, {len(s)} present")
        return s[:length], s[length:]

    def post_dissect(self, s: bytes) -> bytes:
        version = field_value(self, "version")
        if version != 1:
            add_finding(self, "warning", "wrapper.version",
                        f"wrapper version {version}, expected 1")
        return s

    def post_build(self, p: bytes, pay: bytes) -> bytes:
        if self.length is None:
            p = p[:6] + len(pay).to_bytes(2, "big")
        return p + pay

    @property
    def apdu(self) -> Packet | None:
        return self.payload or None

    def mysummary(self) -> str:
        return f"wrapper {self.source_wport} -> {self.destination_wport} len={self.length}"


for _layer in (TCP, UDP):
    bind_layers(_layer, Wrapper, dport=DLMS_PORT)
    bind_layers(_layer, Wrapper, sport=DLMS_PORT)
