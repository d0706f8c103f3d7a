"""Base packet classes: dissection that turns malformed input into findings, never exceptions."""

from __future__ import annotations

from scapy.config import conf
from scapy.packet import Packet

from .expert import add_finding


class DLMSPacket(Packet):
    """A layer whose dissection never raises.

    A field that cannot be decoded stops dissection of this layer: a `malformed.field` finding
    names it and the undecoded bytes are kept as a Raw payload, so nothing is lost.
    """

    def do_dissect(self, s: bytes) -> bytes:
        whole = s
        self.raw_packet_cache_fields = {}
        for fld in self.fields_desc:
            try:
                s, value = fld.getfield(self, s)
            except Exception as exc:  # noqa: BLE001 - a decoding failure becomes a finding
                add_finding(self, "error", "malformed.field",
                            f"{self.name}: cannot decode '{fld.name}' from {len(s)} remaining"
                            f" byte(s) ({exc.__class__.__name__})")
                if s:
                    self.add_payload(conf.raw_layer(s))
                self.raw_packet_cache = None
                self.explicit = 1
                return b""
            if fld.isconditional and value is None:
                continue
            if value is not None and (fld.islist or fld.holds_packets or fld.ismutable):
                self.raw_packet_cache_fields[fld.name] = self._raw_packet_cache_field_value(
                    fld, value, copy=True)
            self.fields[fld.name] = value
        self.raw_packet_cache = whole[: len(whole) - len(s)]
        self.explicit = 1
        return s


class DLMSElement(DLMSPacket):
    """A structure nested inside a field (PacketField / PacketListField): it takes only its bytes."""

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s
