"""The quick dissection constructor of `DLMSPacket` gives what Scapy's own constructor gives."""

from __future__ import annotations

import json

import pytest
from conftest import CORPUS, corpus_path
from scapy.fields import ByteEnumField, ByteField, MultipleTypeField
from scapy.packet import Packet

import layers.packet as packet_module
from dissector.output.fields import packet_fields
from layers.apdu.base import APDU
from layers.packet import DLMSPacket


def test_the_quick_path_is_active_on_the_installed_scapy() -> None:
    assert packet_module.FAST_INIT


def test_first_packet_of_a_class_scapy_does_not_cache() -> None:
    """A MultipleTypeField makes Scapy skip its field cache: the very first packet of such a
    class dissects like every later one."""

    class Choice(DLMSPacket):
        fields_desc = [ByteField("choice", 1),
                       MultipleTypeField([(ByteEnumField("result", 0, {0: "ok"}),
                                           lambda p: p.choice == 3)],
                                         ByteEnumField("result", 0, {0: "success"}))]

    first, second = Choice(b"\x01\x00"), Choice(b"\x01\x00")
    assert (first.choice, first.result) == (1, 0) == (second.choice, second.result)
    assert not first.payload and "findings" not in first.__dict__
    assert bytes(first) == b"\x01\x00"


def _apdus() -> list[bytes]:
    """The APDUs of real captures of the corpus (one of each distinct first bytes), and every
    published plaintext APDU of its manifest."""
    from dissector.analysis.capture import dissect_capture
    from dissector.analysis.pipeline import Dissector

    out: dict[bytes, bytes] = {}
    for capture in sorted(CORPUS.glob("*.pcap")) + sorted(CORPUS.glob("interop/*/capture.pcap")):
        for rec in dissect_capture(str(capture), Dissector()):
            data = rec.packet.original
            if isinstance(data, bytes) and data:
                out.setdefault(data[:6], data)
    items = json.loads(corpus_path("manifest.json").read_text())["items"]
    plain = [bytes.fromhex(i["plaintext_hex"]) for i in items if i.get("plaintext_hex")]
    return list(out.values()) + plain


@pytest.mark.parametrize("data", _apdus())
def test_quick_and_scapy_constructors_agree(data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    quick = APDU(data)
    monkeypatch.setattr(packet_module, "FAST_INIT", False)
    slow = APDU(data)
    assert packet_fields(quick) == packet_fields(slow)
    assert bytes(quick) == bytes(slow)
    assert isinstance(quick, Packet) and type(quick) is type(slow)
