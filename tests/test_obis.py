"""OBIS codes: text forms, well-known names, the field, and the interface-class table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.compat import raw

from layers.obis import INTERFACE_CLASSES, ObisField, obis_name, obis_str, parse_obis
from layers.packet import DLMSPacket


def _b(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


@pytest.mark.parametrize(("code", "name"), [
    ("0.0.1.0.0.255", "clock"),
    ("0.0.40.0.0.255", "current association"),
    ("0.0.40.0.1.255", "association 1"),
    ("0.0.41.0.0.255", "SAP assignment"),
    ("0.0.42.0.0.255", "COSEM logical device name"),
    ("0.0.43.0.0.255", "security setup 0"),
    ("0.0.43.1.0.255", "invocation counter 0"),
    ("0.0.44.0.0.255", "image transfer 0"),
    ("0.0.25.9.0.255", "push setup 0"),
    ("0.1.25.9.0.255", "push setup 0"),
    ("0.0.25.0.0.255", "TCP-UDP setup"),
    ("0.0.22.0.0.255", "IEC HDLC setup"),
    ("0.0.96.3.10.255", "disconnect control"),
    ("0.0.96.1.0.255", "device ID 1 (meter serial number)"),
    ("0.0.96.1.1.255", "device ID 2"),
    ("0.0.99.98.0.255", "standard event log"),
    ("0.0.99.98.1.255", "event log 1"),
    ("1.0.0.2.0.255", "active firmware identifier"),
    ("1.0.99.1.0.255", "load profile 1"),
    ("1.0.99.2.0.255", "load profile 2"),
    ("1.0.1.8.0.255", "active energy import (+A)"),
    ("1.1.1.8.0.255", "active energy import (+A)"),
    ("1.0.2.8.0.255", "active energy export (-A)"),
    ("1.0.1.8.1.255", "active energy import (+A), tariff 1"),
    ("1.0.1.8.0.3", "active energy import (+A), billing period 3"),
    ("1.0.3.8.0.255", "reactive energy import (+R)"),
    ("1.0.1.7.0.255", "active power import (+P)"),
    ("1.0.2.7.0.255", "active power export (-P)"),
    ("1.0.21.7.0.255", "L1 active power import (+P)"),
    ("1.0.32.7.0.255", "L1 voltage"),
    ("1.0.52.7.0.255", "L2 voltage"),
    ("1.0.72.7.0.255", "L3 voltage"),
    ("1.0.31.7.0.255", "L1 current"),
    ("1.0.51.7.0.255", "L2 current"),
    ("1.0.71.7.0.255", "L3 current"),
    ("1.0.13.7.0.255", "power factor"),
    ("1.0.14.7.0.255", "supply frequency"),
    ("1.0.91.7.0.255", "neutral current"),
    ("1.0.1.6.0.255", "active power import, maximum"),
    ("1.0.32.32.0.255", "L1 voltage, under-limit (sag) count"),
])
def test_well_known_names(code: str, name: str) -> None:
    assert obis_name(_b(code)) == name


@pytest.mark.parametrize("code", ["0.0.200.0.0.255", "1.0.99.9.0.255", "1.0.200.7.0.255",
                                  "1.0.32.8.0.255", "9.9.9.9.9.9"])
def test_unknown_codes_have_no_name(code: str) -> None:
    assert obis_name(_b(code)) is None


def test_names_of_corpus_codes(manifest: dict) -> None:
    """Every OBIS code (06 09 06 ...) in the unencrypted pushes renders, most with a name."""
    named = total = 0
    for item in manifest["items"]:
        hexes = item.get("apdu_hex")
        for hex_ in hexes if isinstance(hexes, list) else []:
            b = bytes.fromhex(hex_)
            pos = b.find(b"\x09\x06")
            while pos >= 0:
                code = b[pos + 2:pos + 8]
                if len(code) == 6:
                    total += 1
                    named += obis_name(code) is not None
                    assert obis_str(code).count(".") == 5
                pos = b.find(b"\x09\x06", pos + 2)
    assert total > 100 and named / total > 0.7


@pytest.mark.parametrize("text", ["1.0.1.8.0.255", "1-0:1.8.0.255", "1-0:1.8.0", " 1.0.1.8.0.255 ",
                                  "1-0:1.8.0*255"])
def test_parse_text_forms(text: str) -> None:
    assert parse_obis(text) == bytes([1, 0, 1, 8, 0, 255])


@pytest.mark.parametrize("bad", ["1.0.1.8", "1.0.1.8.0.256", "clock", b"\x01\x02", (1, 2, 3)])
def test_parse_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_obis(bad)


@given(st.binary(min_size=6, max_size=6))
def test_text_round_trip(b: bytes) -> None:
    assert parse_obis(obis_str(b)) == b
    assert parse_obis(tuple(b)) == b


class _Named(DLMSPacket):
    fields_desc = [ObisField("ln", "0.0.1.0.0.255")]


def test_field_builds_and_shows() -> None:
    assert raw(_Named()) == bytes.fromhex("0000010000ff")
    assert raw(_Named(ln="1-0:1.8.0.255")) == bytes.fromhex("0100010800ff")
    assert raw(_Named(ln=(0, 0, 42, 0, 0, 255))) == bytes.fromhex("00002a0000ff")
    p = _Named(bytes.fromhex("0000280000ff"))
    assert p.ln == bytes.fromhex("0000280000ff")
    assert "0.0.40.0.0.255 (current association)" in p.show(dump=True)
    assert obis_str(b"\x01\x02") == "0102"


def test_interface_classes_cover_gurux() -> None:
    """Every class id Gurux knows is named (Gurux files SMTP setup under 2; the Blue Book, 46)."""
    import gurux_dlms  # noqa: F401 - in the test extra
    from gurux_dlms.enums import ObjectType

    gurux = {int(v) for v in ObjectType.__members__.values()} - {0, 2, 8192}
    assert gurux <= set(INTERFACE_CLASSES), sorted(gurux - set(INTERFACE_CLASSES))
    assert INTERFACE_CLASSES[15] == "association-ln" and INTERFACE_CLASSES[64] == "security-setup"
    assert INTERFACE_CLASSES[46] == "smtp-setup"
