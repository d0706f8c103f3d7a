"""general-block-transfer (E0) and gateway-request/-response (E6/E7) (notes §3.6, §3.1)."""

from __future__ import annotations

from scapy.fields import BitField, ByteEnumField, ByteField, Field, ShortField
from scapy.packet import Packet

from ..fields import length_prefixed
from .base import APDU, TAG_NAMES, APDUBase, register

GENERAL_BLOCK_TRANSFER = 0xE0
GATEWAY_REQUEST = 0xE6
GATEWAY_RESPONSE = 0xE7


@register
class GeneralBlockTransfer(APDUBase):
    """General-Block-Transfer: block-control (bit 7 last-block, bit 6 streaming, bits 5..0
    window), block-number, block-number-ack (Unsigned16 each), block-data OCTET STRING.

    The block data of all blocks, joined, is one complete APDU (the reassembler's job).
    """

    apdu_tag = GENERAL_BLOCK_TRANSFER
    apdu_name = "general-block-transfer"
    fields_desc = [
        ByteEnumField("tag", GENERAL_BLOCK_TRANSFER, TAG_NAMES),
        BitField("last_block", 1, 1),
        BitField("streaming", 0, 1),
        BitField("window", 1, 6),
        ShortField("block_number", 1),
        ShortField("block_number_ack", 0),
        *length_prefixed("block_data"),
    ]

    def mysummary(self) -> str:
        flags = (" last" if self.last_block else "") + (" streaming" if self.streaming else "")
        return (f"general-block-transfer block {self.block_number} ack {self.block_number_ack} "
                f"window {self.window}{flags}, {len(self.block_data or b'')} bytes")


def _gateway_fields(tag: int) -> list[Field]:
    return [ByteEnumField("tag", tag, TAG_NAMES), ByteField("network_id", 0),
            *length_prefixed("physical_device_address")]


class _Gateway(APDUBase):
    """Gateway envelope: network-id, physical-device-address, then the inner APDU as payload.

    Structure as Gurux writes and reads it (GXDLMS gateway settings, GXDLMSTranslator); the
    ASN.1 only reserves tags 230/231.
    """

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        return APDU

    def mysummary(self) -> str:
        return (f"{self.apdu_name} network {self.network_id} "
                f"device {(self.physical_device_address or b'').hex()}")


@register
class GatewayRequest(_Gateway):
    """gateway-request (GX): network-id (Unsigned8), physical-device-address OCTET STRING,
    then the APDU for that device."""

    apdu_tag = GATEWAY_REQUEST
    apdu_name = "gateway-request"
    fields_desc = _gateway_fields(GATEWAY_REQUEST)


@register
class GatewayResponse(_Gateway):
    """gateway-response (GX): network-id, physical-device-address, then the device's APDU."""

    apdu_tag = GATEWAY_RESPONSE
    apdu_name = "gateway-response"
    fields_desc = _gateway_fields(GATEWAY_RESPONSE)
