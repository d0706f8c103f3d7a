"""A-XDR Data: corpus payloads against a third-party XML decode, Gurux as encoder/decoder oracle,
round trips of generated trees, and malformed input that must end in findings, never exceptions."""

from __future__ import annotations

import datetime
import math
import struct
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.compat import raw

from layers.axdr import (
    CosemAttributeDescriptor,
    CosemMethodDescriptor,
    Data,
    DataArray,
    DataBitString,
    DataBoolean,
    DataCompactArray,
    DataDate,
    DataDateTime,
    DataDontCare,
    DataDoubleLong,
    DataDoubleLongUnsigned,
    DataEnum,
    DataField,
    DataFloat32,
    DataFloat64,
    DataInteger,
    DataLong,
    DataLong64,
    DataLong64Unsigned,
    DataLongUnsigned,
    DataNull,
    DataOctetString,
    DataStructure,
    DataTime,
    DataUnknown,
    DataUnsigned,
    DataVisibleString,
    SelectiveAccessDescriptor,
    data_value,
)
from layers.axdr_compact import decode_compact_array
from layers.axdr_values import DATA_TYPES, MAX_DEPTH
from layers.expert import findings_of
from layers.obis import obis_str
from layers.packet import DLMSPacket

try:  # tests/ as a package, or as a plain directory on sys.path
    from dissector.conftest import corpus_path
except ImportError:
    from conftest import corpus_path  # type: ignore[no-redef]

# --------------------------------------------------------------------------- corpus vs XML

_XML_CLASSES = {
    "UINT8": DataUnsigned, "INT8": DataInteger, "UINT16": DataLongUnsigned, "INT16": DataLong,
    "UINT32": DataDoubleLongUnsigned, "INT32": DataDoubleLong, "UINT64": DataLong64Unsigned,
    "INT64": DataLong64, "ENUM": DataEnum, "BOOLEAN": DataBoolean,
    "OCTETSTRING": DataOctetString, "VISIBLESTRING": DataVisibleString, "NullData": DataNull,
    "STRUCTURE": DataStructure, "ARRAY": DataArray,
}


def _notification_parts(apdu: bytes) -> tuple[bytes, bytes]:
    """(date-time octets, notification body) of a data-notification APDU."""
    assert apdu[0] == 0x0F
    pos = 5
    if apdu[pos] == 0x09 and apdu[pos + 1] == 0x0C:
        # some Kaifa meters send the date-time as a tagged octet-string Data
        return apdu[pos + 2:pos + 14], apdu[pos + 14:]
    n = apdu[pos]
    return apdu[pos + 1:pos + 1 + n], apdu[pos + 1 + n:]


def _octets_match(b: bytes, shown: str) -> bool:
    """The XML shows octet strings as text, OBIS, date-time or hex, whichever it guessed."""
    value = data_value(DataOctetString(value=b))
    candidates = {b.hex(), obis_str(b)}
    try:
        candidates.add(b.decode("ascii"))
    except UnicodeDecodeError:
        pass
    if isinstance(value, dict):
        return shown.startswith(value["date_time"].split(".")[0])
    return shown in candidates or shown.lower() == b.hex()


def _compare(node: ET.Element, d: Data, path: str = "body") -> int:
    """Assert `d` matches the XML element `node`; return the number of values compared."""
    cls = _XML_CLASSES[node.tag]
    assert isinstance(d, cls), f"{path}: {type(d).__name__} where the XML has {node.tag}"
    if isinstance(d, DataStructure | DataArray):
        children = list(node)
        assert int(node.get("Qty")) == d.count == len(children) == len(d.values), path
        return 1 + sum(_compare(c, v, f"{path}[{i}]")
                       for i, (c, v) in enumerate(zip(children, d.values, strict=True)))
    shown = node.get("Value")
    if isinstance(d, DataOctetString):
        assert _octets_match(d.value, shown), f"{path}: {d.value.hex()} vs {shown!r}"
    elif isinstance(d, DataVisibleString):
        assert data_value(d) == shown, path
    elif isinstance(d, DataNull):
        assert data_value(d) is None
    else:
        assert data_value(d) == int(shown), f"{path}: {data_value(d)} vs {shown}"
    return 1


def _expected_items(manifest: dict) -> list[dict]:
    out = []
    for item in manifest["items"]:
        for hex_ in _notification_hexes(item):
            if item.get("expected_file"):
                out.append({"id": item["id"], "apdu": bytes.fromhex(hex_),
                            "xml": item["expected_file"]})
                break
    return out


def _notification_hexes(item: dict) -> list[str]:
    """Plaintext data-notification APDUs of a manifest item (unencrypted or deciphered)."""
    found = []
    for key in ("plaintext_hex", "apdu_hex"):
        value = item.get(key)
        for hex_ in value if isinstance(value, list) else [value]:
            if isinstance(hex_, str) and hex_.startswith("0f"):
                found.append(hex_)
    return found


def test_corpus_notifications_match_third_party_xml(manifest: dict) -> None:
    items = _expected_items(manifest)
    assert len(items) >= 5, [i["id"] for i in items]
    compared = 0
    for item in items:
        root = ET.parse(corpus_path(item["xml"])).getroot()
        notification = root if root.tag == "DataNotification" else root.find(".//DataNotification")
        assert notification is not None, item["id"]
        stamp, body = _notification_parts(item["apdu"])
        xml_stamp, xml_body = notification[0], notification[1]
        assert xml_stamp.tag == "DateTime"
        if xml_stamp.get("Value"):
            text = data_value(DataOctetString(value=stamp))["date_time"]
            assert xml_stamp.get("Value").startswith(text), (item["id"], text)
        d = Data(body)
        assert raw(d) == body, item["id"]
        assert not findings_of(d), (item["id"], findings_of(d))
        compared += _compare(xml_body, d, item["id"])
    assert compared > 200


def test_corpus_notification_values(manifest: dict) -> None:
    """Values the sources published in words (Kaifa MA309 Tirol, item008)."""
    item = next(i for i in manifest["items"] if i["id"] == "item008")
    stamp, body = _notification_parts(bytes.fromhex(item["plaintext_hex"]))
    assert data_value(DataOctetString(value=stamp))["date_time"].startswith("2021-07-19 15:46:35")
    value = data_value(Data(body))
    assert value[0] == "0000010000ff"
    assert value[1]["date_time"].startswith("2021-07-19 15:46:35")
    assert value[1]["deviation"] == -120 and value[1]["clock_status"] == 0x80
    assert value[2] == ["0000600100ff", b"1KFM0100000035".hex()]
    assert value[3] == ["00002a0000ff", b"KFM1100100000035".hex()]


def test_every_unencrypted_push_round_trips(manifest: dict) -> None:
    seen = 0
    for item in manifest["items"]:
        for hex_ in _notification_hexes(item):
            _, body = _notification_parts(bytes.fromhex(hex_))
            d = Data(body)
            assert raw(d) == body, item["id"]
            _json_ok(data_value(d))
            seen += 1
    assert seen >= 15


def _json_ok(value: Any) -> None:
    import json

    json.dumps(value, allow_nan=False)


# --------------------------------------------------------------------------- Gurux oracle

def _gurux() -> tuple[Any, Any, Any, Any, Any]:
    import gurux_dlms  # noqa: F401 - in the test extra
    from gurux_dlms.enums import DataType
    from gurux_dlms.GXByteBuffer import GXByteBuffer
    from gurux_dlms.GXDLMSSettings import GXDLMSSettings
    from gurux_dlms.internal._GXCommon import _GXCommon
    from gurux_dlms.internal._GXDataInfo import _GXDataInfo

    return DataType, GXByteBuffer, GXDLMSSettings(False, None), _GXCommon, _GXDataInfo


def _gx_encode(type_name: str, value: Any) -> bytes:
    data_type, buffer_cls, gx_settings, common, _ = _gurux()
    buf = buffer_cls()
    common.setData(gx_settings, buf, getattr(data_type, type_name), value)
    return bytes(buf.array())


def _gx_decode(b: bytes) -> Any:
    _, buffer_cls, gx_settings, common, info_cls = _gurux()
    return common.getData(gx_settings, buffer_cls(b), info_cls())


_INT_TYPES = [("INT8", -2**7, 2**7 - 1), ("INT16", -2**15, 2**15 - 1),
              ("INT32", -2**31, 2**31 - 1), ("INT64", -2**63, 2**63 - 1),
              ("UINT8", 0, 2**8 - 1), ("UINT16", 0, 2**16 - 1), ("UINT32", 0, 2**32 - 1),
              ("UINT64", 0, 2**64 - 1), ("ENUM", 0, 255)]


@st.composite
def _gurux_scalar(draw: st.DrawFn) -> tuple[str, Any]:
    kind = draw(st.sampled_from(["int", "OCTET_STRING", "STRING", "STRING_UTF8", "BOOLEAN",
                                 "FLOAT32", "FLOAT64"]))
    if kind == "int":
        name, lo, hi = draw(st.sampled_from(_INT_TYPES))
        return name, draw(st.integers(lo, hi))
    if kind == "OCTET_STRING":
        return kind, draw(st.binary(max_size=300))
    if kind == "STRING":
        return kind, draw(st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                  max_size=200))
    if kind == "STRING_UTF8":
        return kind, draw(st.text(st.characters(exclude_categories=("Cs",)), max_size=50))
    if kind == "BOOLEAN":
        return kind, draw(st.booleans())
    width = 32 if kind == "FLOAT32" else 64
    return kind, draw(st.floats(width=width, allow_nan=False, allow_infinity=False))


@given(_gurux_scalar())
@settings(max_examples=300, deadline=None)
def test_values_encoded_by_gurux_decode(case: tuple[str, Any]) -> None:
    type_name, value = case
    b = _gx_encode(type_name, value)
    d = Data(b)
    assert raw(d) == b and not findings_of(d)
    got = data_value(d)
    if type_name == "OCTET_STRING":
        assert d.value == value
    else:
        assert got == value


def _gx_plain(v: Any) -> Any:
    """Gurux decoded value -> the form `data_value` gives (for the types compared here)."""
    if isinstance(v, list):
        return [_gx_plain(x) for x in v]
    if isinstance(v, bytes | bytearray):
        return bytes(v).hex()
    if isinstance(v, bool | int | str) or v is None:
        return v
    return int(v)  # Gurux sized-integer wrappers


_gx_leaf = st.one_of(
    st.integers(0, 255).map(lambda v: DataUnsigned(value=v)),
    st.integers(-2**15, 2**15 - 1).map(lambda v: DataLong(value=v)),
    st.integers(0, 2**32 - 1).map(lambda v: DataDoubleLongUnsigned(value=v)),
    st.integers(-2**63, 2**63 - 1).map(lambda v: DataLong64(value=v)),
    st.integers(0, 255).map(lambda v: DataEnum(value=v)),
    st.booleans().map(lambda v: DataBoolean(value=int(v))),
    st.binary(min_size=1, max_size=40).filter(lambda b: len(b) != 12).map(Data.octet_string),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30)
    .map(Data.visible_string),
)
_gx_tree = st.recursive(
    _gx_leaf,
    lambda kids: st.lists(kids, min_size=1, max_size=5).map(lambda v: DataStructure(values=v))
    | st.lists(kids, min_size=1, max_size=5).map(lambda v: DataArray(values=v)),
    max_leaves=25,
)


@given(_gx_tree)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_gurux_decodes_what_we_build(tree: Data) -> None:
    b = raw(tree)
    assert _gx_plain(_gx_decode(b)) == data_value(Data(b))


# --------------------------------------------------------------------------- generated trees

def _bit_string(data: bytes, pad: int) -> DataBitString:
    return DataBitString(length=max(len(data) * 8 - pad, 0), value=data)


def _compact_unsigned16(values: list[int]) -> DataCompactArray:
    return DataCompactArray(description=b"\x12",
                            contents=b"".join(struct.pack(">H", v) for v in values))


_leaf = st.one_of(
    st.builds(DataNull), st.builds(DataDontCare),
    st.booleans().map(lambda v: DataBoolean(value=int(v))),
    st.tuples(st.binary(max_size=20), st.integers(0, 7)).map(lambda a: _bit_string(*a)),
    st.integers(-2**31, 2**31 - 1).map(lambda v: DataDoubleLong(value=v)),
    st.integers(0, 2**32 - 1).map(lambda v: DataDoubleLongUnsigned(value=v)),
    st.binary(max_size=300).map(Data.octet_string),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
    .map(Data.visible_string),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=20).map(Data.utf8_string),
    st.integers(-128, 127).map(lambda v: Data.of("bcd", v)),
    st.integers(-128, 127).map(lambda v: DataInteger(value=v)),
    st.integers(-2**15, 2**15 - 1).map(lambda v: DataLong(value=v)),
    st.integers(0, 255).map(lambda v: DataUnsigned(value=v)),
    st.integers(0, 2**16 - 1).map(lambda v: DataLongUnsigned(value=v)),
    st.lists(st.integers(0, 2**16 - 1), max_size=10).map(_compact_unsigned16),
    st.integers(-2**63, 2**63 - 1).map(lambda v: DataLong64(value=v)),
    st.integers(0, 2**64 - 1).map(lambda v: DataLong64Unsigned(value=v)),
    st.integers(0, 255).map(lambda v: DataEnum(value=v)),
    st.floats(width=32, allow_nan=False).map(lambda v: DataFloat32(value=v)),
    st.floats(allow_nan=False).map(lambda v: DataFloat64(value=v)),
    st.binary(min_size=12, max_size=12).map(lambda b: DataDateTime(value=b)),
    st.binary(min_size=5, max_size=5).map(lambda b: DataDate(value=b)),
    st.binary(min_size=4, max_size=4).map(lambda b: DataTime(value=b)),
)
_tree = st.recursive(
    _leaf,
    lambda kids: st.lists(kids, max_size=6).map(lambda v: DataStructure(values=v))
    | st.lists(kids, max_size=6).map(lambda v: DataArray(values=v)),
    max_leaves=40,
)


@given(_tree)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_trees_round_trip(tree: Data) -> None:
    b = raw(tree)
    d = Data(b)
    assert type(d) is type(tree)
    assert raw(d) == b
    assert not findings_of(d)
    assert data_value(d) == data_value(tree)
    _json_ok(data_value(d))
    d.show(dump=True)


@given(_tree, st.data())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_truncated_trees_give_findings(tree: Data, data: st.DataObject) -> None:
    b = raw(tree)
    if len(b) < 2:
        return
    cut = data.draw(st.integers(1, len(b) - 1))
    d = Data(b[:cut])
    assert raw(d) == b[:cut]
    assert findings_of(d)
    _json_ok(data_value(d))


@given(st.binary(max_size=200))
@settings(max_examples=500, deadline=None)
def test_arbitrary_bytes_never_raise(b: bytes) -> None:
    if not b:
        return
    d = Data(b)
    assert raw(d) == b
    _json_ok(data_value(d))
    d.show(dump=True)


# --------------------------------------------------------------------------- encodings

@pytest.mark.parametrize(("data", "wire"), [
    (DataNull(), "00"),
    (DataDontCare(), "ff"),
    (DataBoolean(value=1), "0301"),
    (DataDoubleLong(value=-2), "05fffffffe"),
    (DataDoubleLongUnsigned(value=0x12345678), "0612345678"),
    (Data.octet_string(b"\x01\x02"), "09020102"),
    (Data.octet_string(bytes(200)), "0981c8" + "00" * 200),
    (Data.visible_string("abc"), "0a03616263"),
    (Data.utf8_string("é"), "0c02c3a9"),
    (DataInteger(value=-1), "0fff"),
    (DataLong(value=-2), "10fffe"),
    (DataUnsigned(value=5), "1105"),
    (DataLongUnsigned(value=0x1234), "121234"),
    (DataLong64(value=-3), "14fffffffffffffffd"),
    (DataEnum(value=27), "161b"),
    (DataFloat32(value=1.5), "173fc00000"),
    (DataStructure(values=[DataLongUnsigned(value=5), DataInteger(value=-1)]), "02021200050fff"),
    (DataArray(values=[DataUnsigned(value=1)] * 130), "018182" + "1101" * 130),
    (DataBitString(length=5, value=b"\xb0"), "0405b0"),
    (Data.date_time(datetime.datetime(2021, 7, 19, 15, 46, 35), -120, 0x80),
     "1907e50713010f2e2300ff8880"),
])
def test_known_encodings(data: Data, wire: str) -> None:
    assert raw(data).hex() == wire
    again = Data(bytes.fromhex(wire))
    assert raw(again).hex() == wire and type(again) is type(data)


def test_data_of_and_dispatch_by_type() -> None:
    assert isinstance(Data(type=17, value=3), DataUnsigned)
    assert raw(Data.of("long-unsigned", 7)) == b"\x12\x00\x07"
    assert raw(Data.of(2, [Data.of(17, 1)])) == b"\x02\x01\x11\x01"
    assert isinstance(Data(), DataNull)
    assert set(DATA_TYPES) <= set(range(256))


def test_date_time_rendering() -> None:
    d = Data(bytes.fromhex("19" "07e50713010f2e2300ff8880"))
    assert data_value(d) == {"date_time": "2021-07-19 15:46:35.00", "weekday": 1,
                             "deviation": -120, "clock_status": 0x80,
                             "hex": "07e50713010f2e2300ff8880"}
    unspecified = data_value(Data(bytes.fromhex("19ffffffffffffffffff8000ff")))
    assert unspecified["date_time"] == "*-*-* *:*:*"
    assert unspecified["deviation"] is None and unspecified["clock_status"] is None
    assert data_value(Data(bytes.fromhex("1a07e8fefdff")))["date"] == "2024-dst-begin-second-last"
    assert data_value(Data(bytes.fromhex("1b0c1eff00")))["time"] == "12:30:*.00"
    # octet-string of a plausible date-time: rendered as one, still an octet-string on the wire
    o = Data(bytes.fromhex("090c07e50713010f2e2300ff8880"))
    assert isinstance(o, DataOctetString) and data_value(o)["deviation"] == -120
    assert "2021-07-19 15:46:35" in o.show(dump=True)
    assert data_value(Data.octet_string(b"0123456789ab")) == b"0123456789ab".hex()


def test_bit_string_and_floats() -> None:
    assert data_value(Data(bytes.fromhex("040bdead"))) == "11011110101"
    assert data_value(Data(bytes.fromhex("177fc00000"))) == "nan"
    assert data_value(Data(bytes.fromhex("18fff0000000000000"))) == "-inf"
    assert math.isclose(data_value(Data(bytes.fromhex("18400921fb54442d18"))), math.pi)


def test_compact_array() -> None:
    # structure{long-unsigned, double-long-unsigned}, two elements
    wire = bytes.fromhex("13" "02021206" "0c" "000100000001" "000200000002")
    d = Data(wire)
    assert isinstance(d, DataCompactArray) and raw(d) == wire and not findings_of(d)
    assert data_value(d) == [[1, 1], [2, 2]]
    assert data_value(d) == _gx_plain(_gx_decode(wire))
    assert "structure{long-unsigned, double-long-unsigned}" in d.show(dump=True)
    # array[2] of unsigned inside a structure, with an octet-string member
    wire = bytes.fromhex("13" "020201000211" "09" "0c" "0102" "02aabb" "0304" "00" "0506" "01cc")
    d = Data(wire)
    assert raw(d) == wire and not findings_of(d)
    assert data_value(d) == [[[1, 2], "aabb"], [[3, 4], ""], [[5, 6], "cc"]]
    # built by a user
    built = DataCompactArray(description=b"\x12", contents=b"\x00\x01\x00\x02\x00\x03")
    assert raw(built).hex() == "131206000100020003"
    assert decode_compact_array(b"\x12", b"\x00\x01\x00\x02\x00\x03") == [1, 2, 3]


@pytest.mark.parametrize(("wire", "code"), [
    ("13 12 03 000100", "axdr.bad-compact-array"),          # half an element
    ("13 00 02 0000", "axdr.bad-compact-array"),            # null-data elements: no size
    ("13 01ffff 01ffff 00 00", "axdr.bad-type-description"),  # array of zero-size arrays
    ("13 02 05 11 00", "axdr.bad-type-description"),        # 5 members in 2 bytes
    ("13 01ffff 01ffff 11 03 010203", "axdr.bad-compact-array"),  # billions needed, 3 there
    ("13" + "0201" * 70 + "11 01 01", "axdr.bad-type-description"),  # description too deep
])
def test_bad_compact_arrays(wire: str, code: str) -> None:
    b = bytes.fromhex(wire.replace(" ", ""))
    d = Data(b)
    assert raw(d) == b
    assert code in {f.code for f in findings_of(d)}
    _json_ok(data_value(d))


# --------------------------------------------------------------------------- malformed input

def test_too_deep_is_a_finding() -> None:
    wire = b"\x01\x01" * 500 + b"\x11\x05"
    d = Data(wire)
    assert raw(d) == wire
    codes = [f.code for f in findings_of(d)]
    assert codes == ["axdr.too-deep"]
    depth, p = 0, d
    while isinstance(p, DataArray) and p.values:
        depth, p = depth + 1, p.values[0]
    assert depth == MAX_DEPTH
    _json_ok(data_value(d))


def test_nesting_up_to_the_limit_is_decoded() -> None:
    wire = b"\x02\x01" * MAX_DEPTH + b"\x11\x05"
    d = Data(wire)
    assert raw(d) == wire and not findings_of(d)
    value = data_value(d)
    for _ in range(MAX_DEPTH):
        value = value[0]
    assert value == 5


@pytest.mark.parametrize("wire", [
    "01 84 7fffffff 1101",           # two billion elements in 2 bytes
    "02 03 11 01 01 82 ffff 1100",   # nested array claims 65535 elements
    "01 83 020209 1101",             # non-canonical 3-byte count, kept as sent
])
def test_impossible_counts_are_findings(wire: str) -> None:
    b = bytes.fromhex(wire.replace(" ", ""))
    d = Data(b)
    assert raw(d) == b
    assert [f.code for f in findings_of(d)] == ["axdr.bad-count"]


def test_truncation_and_unknown_tags() -> None:
    d = Data(bytes.fromhex("0203 1101 1102"))
    assert [f.code for f in findings_of(d)] == ["malformed.truncated"]
    assert data_value(d) == [1, 2]
    d = Data(bytes.fromhex("0203 1101 0600"))
    assert [f.code for f in findings_of(d)] == ["malformed.field"]
    assert data_value(d) == [1, None] and raw(d) == bytes.fromhex("020311010600")
    d = Data(bytes.fromhex("0202 07 0102 1101"))
    assert isinstance(d.values[0], DataUnknown)
    assert [f.code for f in findings_of(d)] == ["axdr.unknown-type"]
    assert raw(d).hex() == "0202070102" "1101"
    d = Data(bytes.fromhex("0905 0102"))
    assert [f.code for f in findings_of(d)] == ["malformed.truncated"]


def test_trailing_bytes_stay_visible() -> None:
    d = Data(bytes.fromhex("1105 aabb"))
    assert data_value(d) == 5 and raw(d).hex() == "1105aabb"


# --------------------------------------------------------------------------- descriptors

class _Holder(DLMSPacket):
    fields_desc = [DataField("value"), DataField("other")]


def test_data_field_in_a_packet() -> None:
    wire = bytes.fromhex("020212000511ff" "0a0161")
    p = _Holder(wire)
    assert isinstance(p.value, DataStructure) and isinstance(p.other, DataVisibleString)
    assert raw(p) == wire
    assert raw(_Holder(value=DataUnsigned(value=1), other=DataNull())) == b"\x11\x01\x00"


def test_descriptors_from_corpus(manifest: dict) -> None:
    # get-request normal: C0 01 iip, attribute descriptor, no access selection (item002)
    item = next(i for i in manifest["items"] if i["id"] == "item002")
    apdu = bytes.fromhex(item["plaintext_hex"])
    desc = CosemAttributeDescriptor(apdu[3:12])
    assert desc.class_id == 8 and obis_str(desc.instance_id) == "0.0.1.0.0.255"
    assert desc.attribute_id == 2 and raw(desc) == apdu[3:12]
    assert "clock" in desc.show(dump=True)
    built = CosemAttributeDescriptor(class_id=8, instance_id="0.0.1.0.0.255", attribute_id=2)
    assert raw(built) == apdu[3:12]


def test_method_and_selective_access() -> None:
    # reply_to_HLS_authentication on the current association (notes §3.5, Kaifa trace)
    m = CosemMethodDescriptor(bytes.fromhex("000f0000280000ff01"))
    assert m.class_id == 15 and m.method_id == 1 and "association" in m.mysummary()
    assert raw(CosemMethodDescriptor(class_id=15, instance_id="0-0:40.0.0.255", method_id=1)) \
        == bytes.fromhex("000f0000280000ff01")
    wire = bytes.fromhex("02" "0204" "020412000809060000010000ff0f02120000"
                         "090c07e50101ff000000ff800000" "090c07e50102ff000000ff800000" "0100")
    sel = SelectiveAccessDescriptor(wire)
    assert sel.access_selector == 2 and raw(sel) == wire
    assert isinstance(sel.access_parameters, DataStructure) and not findings_of(sel)
    assert data_value(sel.access_parameters)[1]["date_time"].startswith("2021-01-01 00:00:00")
