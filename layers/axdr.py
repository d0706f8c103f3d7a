"""A-XDR `Data` (the typed-value CHOICE of DLMS/COSEM) and the COSEM object descriptors.

`Data(b)` returns the subclass for the type tag `b[0]` (`DataUnsigned`, `DataStructure`, ...);
each subclass starts with `ByteEnumField("type", <tag>, DATA_TYPES)`.  Values build as well as
they dissect: `DataStructure(values=[DataUnsigned(value=5), Data.octet_string(b"x")])`; array and
structure counts and string lengths are computed on build.

Malformed input never raises: nesting deeper than `MAX_DEPTH`, an element count that the
remaining bytes cannot hold, a truncated value or an unknown type tag each become a finding
(`axdr.too-deep`, `axdr.bad-count`, `malformed.truncated`, `axdr.unknown-type`, ...) and the
undecoded bytes stay in the element as a Raw payload, so `raw()` still gives the input back.

`data_value(pkt)` turns a Data tree into JSON-serialisable Python values (see its docstring).
Type tables and basic values: `layers.axdr_values`; date-time: `layers.axdr_datetime`;
compact-array descriptions: `layers.axdr_compact`.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, ClassVar

from scapy.config import conf
from scapy.fields import (
    ByteEnumField,
    ByteField,
    Field,
    IEEEDoubleField,
    IEEEFloatField,
    IntField,
    LongField,
    PacketField,
    PacketListField,
    ShortEnumField,
    ShortField,
    SignedByteField,
    SignedIntField,
    SignedLongField,
    SignedShortField,
    StrField,
)
from scapy.packet import Packet, RawVal

from .axdr_compact import TypeDescriptionField, decode_compact_array
from .axdr_datetime import DateTimeField, date_time_value, encode_date_time
from .axdr_values import (
    DATA_TYPES,
    MAX_DEPTH,
    TAG_OF_NAME,
    BitsField,
    OctetStringValueField,
    TextValueField,
    bit_text,
    number_value,
    string_value,
)
from .expert import add_finding
from .fields import OctetsField, VarLenField
from .obis import INTERFACE_CLASSES, ObisField, obis_str
from .packet import DLMSElement, PacketElements, attach, dissect_as, keep_own_bytes, set_slot

#: Most array/structure elements decoded in one Data tree (each is a Packet of about a
#: kilobyte): a longer list keeps its remaining elements undecoded, with a finding.
MAX_ELEMENTS = 1 << 16

#: Type tag -> Data subclass (filled by `_register`).
DATA_CLASSES: dict[int, type[Data]] = {}


def data_value(pkt: Any) -> Any:
    """JSON-serialisable Python value of a Data packet.

    - null-data, dont-care: None; boolean: bool; integer types, enum, bcd: int
    - float32/float64: float (non-finite values as the strings "nan", "inf", "-inf")
    - octet-string: lower-case hex, except 12 bytes that read as a date-time (below)
    - visible-string: str (ASCII, else Latin-1); utf8-string: str
    - bit-string: str of "0"/"1", as many as the bit length
    - array, structure: list; compact-array: list of the decoded elements (a structure element
      is a list), or {"description": hex, "contents": hex} when the contents do not decode
    - date-time: {"date_time": "YYYY-MM-DD hh:mm:ss[.hh]", "weekday", "deviation",
      "clock_status", "hex"}; date: {"date", "weekday", "hex"}; time: {"time", "hex"}.
      Not-specified fields are "*" in the text and None elsewhere; month 0xFD/0xFE are
      "dst-end"/"dst-begin", day 0xFD/0xFE "second-last"/"last".  `deviation` is the raw signed
      minutes field as sent (its sign convention varies between meters).
    - undecodable or missing values: None; a non-Data packet: its bytes as hex.
    """
    if pkt is None:
        return None
    if isinstance(pkt, Data):
        return pkt.to_python()
    if isinstance(pkt, Packet):
        return bytes(pkt).hex()
    return pkt


# --------------------------------------------------------------------------- Data classes

def _register(cls: type[Data]) -> type[Data]:
    DATA_CLASSES[cls.type_tag] = cls
    return cls


def _depth(pkt: Packet) -> int:
    """Nesting depth of an array/structure (1 for the outermost Data), computed once."""
    depth = pkt.__dict__.get("_axdr_depth")
    if depth is None:
        parent = pkt.parent
        depth = parent.__dict__.get("_axdr_depth", 0) + 1 if isinstance(parent, Data) else 1
        pkt.__dict__["_axdr_depth"] = depth
    return depth


class Data(DLMSElement):
    """The A-XDR Data CHOICE: `Data(b)` dispatches on the type tag `b[0]`.

    `Data(type=17, value=5)` (no bytes) picks the class from `type`.  Convenience constructors:
    `Data.of(tag_or_name, value)`, `Data.octet_string(b)`, `Data.visible_string(s)`,
    `Data.structure(*items)`, `Data.array(*items)`, `Data.date_time(dt)`.
    """

    name = "Data"
    type_tag: ClassVar[int] = 0
    fields_desc = [ByteEnumField("type", 0, DATA_TYPES)]

    @classmethod
    def dispatch_hook(cls, _pkt: bytes | None = None, *args: Any, **kargs: Any) -> type[Packet]:
        if _pkt:
            return DATA_CLASSES.get(_pkt[0], DataUnknown)
        return DATA_CLASSES.get(kargs.get("type", 0), DataUnknown)

    # -- construction helpers
    @staticmethod
    def of(tag: int | str, value: Any = None) -> Data:
        """A Data of type `tag` (number or Green Book name) holding `value`."""
        cls = DATA_CLASSES[TAG_OF_NAME[tag] if isinstance(tag, str) else tag]
        if value is None:
            return cls()
        if issubclass(cls, _DataSequence):
            return cls(values=list(value))
        return cls(value=value)

    @staticmethod
    def octet_string(value: bytes) -> DataOctetString:
        return DataOctetString(value=value)

    @staticmethod
    def visible_string(value: str | bytes) -> DataVisibleString:
        return DataVisibleString(value=value.encode("latin-1") if isinstance(value, str) else value)

    @staticmethod
    def utf8_string(value: str) -> DataUtf8String:
        return DataUtf8String(value=value.encode("utf-8"))

    @staticmethod
    def structure(*items: Data) -> DataStructure:
        return DataStructure(values=list(items))

    @staticmethod
    def array(*items: Data) -> DataArray:
        return DataArray(values=list(items))

    @staticmethod
    def date_time(value: _dt.datetime, deviation: int | None = None,
                  clock_status: int | None = None) -> DataDateTime:
        return DataDateTime(value=encode_date_time(value, deviation, clock_status))

    # -- dissection
    def dissect(self, s: bytes) -> None:
        """Like Packet.dissect; inside an array/structure the leftover bytes are handed back
        directly (no Padding layer per element)."""
        s = self.post_dissect(self.do_dissect(self.pre_dissect(s)))
        if s:
            keep_own_bytes(self, len(s))
            if isinstance(self.parent, _DataSequence):
                self.__dict__["_axdr_left"] = s
            elif conf.padding:
                attach(self, dissect_as(conf.padding_layer, s))

    def post_dissect(self, s: bytes) -> bytes:
        rest = self.__dict__.pop("_axdr_rest", None)
        if rest:
            # the list gave up: what it could not decode stays in this element as Raw
            cache = self.raw_packet_cache
            if cache is not None:
                self.raw_packet_cache = cache[:len(cache) - len(rest)]
            self.add_payload(conf.raw_layer(rest))
        if "findings" in self.__dict__:
            # a field failed: the ones after it were never on the wire, so they build as nothing
            for fld in self.fields_desc:
                if fld.name not in self.fields:
                    self.fields[fld.name] = RawVal(b"")
        return s

    # -- presentation
    def to_python(self) -> Any:
        """JSON-serialisable value (see `data_value`)."""
        value = self.getfieldval("value") if "value" in self.fieldtype else None
        if value is None or isinstance(value, RawVal):
            return None
        return number_value(value)

    def mysummary(self) -> str:
        value = self.to_python()
        if isinstance(value, list):
            value = f"[{len(value)}]"
        return f"{DATA_TYPES.get(self.type_tag, 'data')} {value}"


class _DataListField(PacketListField):
    """The elements of an array/structure: `count` (the previous field) Data elements."""

    __slots__: list[str] = []

    def __init__(self, name: str) -> None:
        super().__init__(name, [], Data)

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, list[Packet]]:
        want = pkt.getfieldval("count")
        kind = DATA_TYPES.get(pkt.type_tag, "data")
        if _depth(pkt) > MAX_DEPTH:
            # reported on the outermost Data, where tree walkers (bounded depth) still see it
            root = pkt
            while isinstance(root.parent, Data):
                root = root.parent
            add_finding(root, "error", "axdr.too-deep",
                        f"Data nested deeper than {MAX_DEPTH} levels: the innermost {kind} is"
                        f" kept as {len(s)} undecoded byte(s)")
            pkt.__dict__["_axdr_abort"] = True
            pkt.__dict__["_axdr_rest"] = s
            return b"", []
        if want > len(s):
            return self._give_up(pkt, s, "axdr.bad-count",
                                 f"{kind} of {want} elements in {len(s)} byte(s)")
        root = pkt
        while isinstance(root.parent, Data):
            root = root.parent
        decoded = root.__dict__.get("_axdr_elements", 0)
        out: list[Packet] = []
        classes = DATA_CLASSES
        while len(out) < want:
            if not s:
                add_finding(pkt, "error", "malformed.truncated",
                            f"{kind}: {len(out)} of {want} elements present")
                break
            if decoded >= MAX_ELEMENTS:
                add_finding(root, "error", "axdr.too-many-elements",
                            f"Data with more than {MAX_ELEMENTS} elements: {kind} element"
                            f" {len(out) + 1} of {want} and what follows kept as {len(s)}"
                            " undecoded byte(s)")
                pkt.__dict__["_axdr_abort"] = True
                pkt.__dict__["_axdr_rest"] = s
                s = b""
                break
            decoded += 1
            root.__dict__["_axdr_elements"] = decoded
            child = dissect_as(classes.get(s[0], DataUnknown), s, internal=1, parent=pkt)
            out.append(child)
            s = child.__dict__.pop("_axdr_left", b"")
            if "findings" in child.__dict__ or "_axdr_abort" in child.__dict__:
                # the element already reported; stop here without a second finding
                pkt.__dict__["_axdr_abort"] = True
                break
        return s, out

    @staticmethod
    def _give_up(pkt: Packet, s: bytes, code: str, message: str) -> tuple[bytes, list[Packet]]:
        add_finding(pkt, "error", code, message)
        pkt.__dict__["_axdr_rest"] = s
        return b"", []


class _DataSequence(Data):
    """Common base of array and structure."""

    fields_desc = [ByteEnumField("type", 1, DATA_TYPES),
                   VarLenField("count", None, count_of="values"),
                   _DataListField("values")]

    def to_python(self) -> Any:
        values = self.getfieldval("values")
        if isinstance(values, RawVal):
            return None
        return [v.to_python() if isinstance(v, Data) else None for v in values]


@_register
class DataArray(_DataSequence):
    name = "Data array"
    type_tag = 1
    fields_desc = [ByteEnumField("type", 1, DATA_TYPES), *_DataSequence.fields_desc[1:]]


@_register
class DataStructure(_DataSequence):
    name = "Data structure"
    type_tag = 2
    fields_desc = [ByteEnumField("type", 2, DATA_TYPES), *_DataSequence.fields_desc[1:]]


@_register
class DataNull(Data):
    name = "Data null-data"
    type_tag = 0
    fields_desc = [ByteEnumField("type", 0, DATA_TYPES)]


@_register
class DataDontCare(Data):
    name = "Data dont-care"
    type_tag = 255
    fields_desc = [ByteEnumField("type", 255, DATA_TYPES)]


@_register
class DataBoolean(Data):
    name = "Data boolean"
    type_tag = 3
    fields_desc = [ByteEnumField("type", 3, DATA_TYPES),
                   ByteEnumField("value", 0, {0: "false", 1: "true"})]

    def to_python(self) -> Any:
        value = self.getfieldval("value")
        return None if isinstance(value, RawVal) else bool(value)


def _bit_bytes(pkt: Packet) -> int:
    return (pkt.fields["length"] + 7) // 8


def _bits_of(pkt: Packet, nbytes: int) -> int:
    return nbytes * 8


@_register
class DataBitString(Data):
    """bit-string: length in bits, then ceil(bits / 8) bytes."""

    name = "Data bit-string"
    type_tag = 4
    fields_desc = [ByteEnumField("type", 4, DATA_TYPES),
                   VarLenField("length", None, length_of="value", adjust=_bits_of),
                   BitsField("value", b"", length_from=_bit_bytes)]

    def to_python(self) -> Any:
        value = self.getfieldval("value")
        if isinstance(value, RawVal):
            return None
        length = self.length if isinstance(self.length, int) else len(value) * 8
        return bit_text(value, length)


def _length(pkt: Packet) -> int:
    return pkt.fields["length"]  # set just before, during dissection


@_register
class DataOctetString(Data):
    name = "Data octet-string"
    type_tag = 9
    fields_desc = [ByteEnumField("type", 9, DATA_TYPES),
                   VarLenField("length", None, length_of="value"),
                   OctetStringValueField("value", b"", length_from=_length)]

    def to_python(self) -> Any:
        value = self.getfieldval("value")
        return None if isinstance(value, RawVal) else string_value(9, value)


@_register
class DataVisibleString(Data):
    name = "Data visible-string"
    type_tag = 10
    fields_desc = [ByteEnumField("type", 10, DATA_TYPES),
                   VarLenField("length", None, length_of="value"),
                   TextValueField("value", b"", length_from=_length)]

    def to_python(self) -> Any:
        value = self.getfieldval("value")
        return None if isinstance(value, RawVal) else string_value(10, value)


@_register
class DataUtf8String(DataVisibleString):
    name = "Data utf8-string"
    type_tag = 12
    fields_desc = [ByteEnumField("type", 12, DATA_TYPES), *DataVisibleString.fields_desc[1:]]

    def to_python(self) -> Any:
        value = self.getfieldval("value")
        return None if isinstance(value, RawVal) else string_value(12, value)


class _FixedData(Data):
    """A type tag and one fixed-size value (a struct-format Field): decoded in one step when
    all its bytes are there; otherwise the generic path decodes and reports what is missing."""

    def do_dissect(self, s: bytes) -> bytes:
        fld = self.fields_desc[1]
        end = 1 + fld.sz
        if len(s) < end:
            return super().do_dissect(s)
        self.fields["type"] = s[0]
        self.fields["value"] = fld.m2i(self, fld.struct.unpack_from(s, 1)[0])
        set_slot(self, "raw_packet_cache_fields", {})
        set_slot(self, "raw_packet_cache", s[:end])
        set_slot(self, "explicit", 1)
        return s[end:]


def _simple(tag: int, field: Field, doc: str) -> type[Data]:
    """A Data class made of the type tag and one fixed-size value field."""
    cls_name = "Data" + "".join(p.capitalize() for p in DATA_TYPES[tag].split("-"))
    cls = type(cls_name, (_FixedData,), {
        "__doc__": doc, "__module__": __name__, "name": f"Data {DATA_TYPES[tag]}",
        "type_tag": tag, "fields_desc": [ByteEnumField("type", tag, DATA_TYPES), field],
    })
    return _register(cls)


DataDoubleLong = _simple(5, SignedIntField("value", 0), "double-long: Integer32.")
DataDoubleLongUnsigned = _simple(6, IntField("value", 0), "double-long-unsigned: Unsigned32.")
DataBcd = _simple(13, SignedByteField("value", 0), "bcd: one byte, typed Integer8 by the ASN.1.")
DataInteger = _simple(15, SignedByteField("value", 0), "integer: Integer8.")
DataLong = _simple(16, SignedShortField("value", 0), "long: Integer16.")
DataUnsigned = _simple(17, ByteField("value", 0), "unsigned: Unsigned8.")
DataLongUnsigned = _simple(18, ShortField("value", 0), "long-unsigned: Unsigned16.")
DataLong64 = _simple(20, SignedLongField("value", 0), "long64: Integer64.")
DataLong64Unsigned = _simple(21, LongField("value", 0), "long64-unsigned: Unsigned64.")
DataEnum = _simple(22, ByteField("value", 0), "enum: one byte.")
DataFloat32 = _simple(23, IEEEFloatField("value", 0.0), "float32: IEEE 754 single.")
DataFloat64 = _simple(24, IEEEDoubleField("value", 0.0), "float64: IEEE 754 double.")


class _DateTimeData(Data):
    def to_python(self) -> Any:
        value = self.getfieldval("value")
        return date_time_value(value) if isinstance(value, bytes) else None


@_register
class DataDateTime(_DateTimeData):
    """date-time: year u16, month, day, weekday, hour, minute, second, hundredths,
    deviation i16 (0x8000 not specified), clock status."""

    name = "Data date-time"
    type_tag = 25
    fields_desc = [ByteEnumField("type", 25, DATA_TYPES), DateTimeField("value", None, 12)]


@_register
class DataDate(_DateTimeData):
    """date: year u16, month, day, weekday."""

    name = "Data date"
    type_tag = 26
    fields_desc = [ByteEnumField("type", 26, DATA_TYPES), DateTimeField("value", None, 5)]


@_register
class DataTime(_DateTimeData):
    """time: hour, minute, second, hundredths."""

    name = "Data time"
    type_tag = 27
    fields_desc = [ByteEnumField("type", 27, DATA_TYPES), DateTimeField("value", None, 4)]


def _contents_length(pkt: Packet) -> int:
    return pkt.fields["contents_length"]


@_register
class DataCompactArray(Data):
    """compact-array: a TypeDescription, then the untagged element values as an octet string."""

    name = "Data compact-array"
    type_tag = 19
    fields_desc = [ByteEnumField("type", 19, DATA_TYPES),
                   TypeDescriptionField("description"),
                   VarLenField("contents_length", None, length_of="contents"),
                   OctetsField("contents", b"", length_from=_contents_length)]

    def post_dissect(self, s: bytes) -> bytes:
        s = super().post_dissect(s)
        if "findings" not in self.__dict__:
            try:
                decode_compact_array(self.description, self.contents)
            except ValueError as exc:
                add_finding(self, "error", "axdr.bad-compact-array", f"compact-array: {exc}")
        return s

    def to_python(self) -> Any:
        description, contents = self.getfieldval("description"), self.getfieldval("contents")
        if isinstance(description, RawVal) or isinstance(contents, RawVal):
            return None
        try:
            return decode_compact_array(description, contents)
        except ValueError:
            return {"description": description.hex(), "contents": contents.hex()}


class DataUnknown(Data):
    """A type tag that is not in `DATA_TYPES`: the rest of the bytes are kept as they are."""

    name = "Data (unknown type)"
    type_tag = -1
    fields_desc = [ByteEnumField("type", 0xFE, DATA_TYPES), StrField("data", b"")]

    def post_dissect(self, s: bytes) -> bytes:
        add_finding(self, "error", "axdr.unknown-type",
                    f"Data type tag {self.type} is not an A-XDR Data type")
        return super().post_dissect(s)

    def to_python(self) -> Any:
        data = self.getfieldval("data")
        return bytes(data).hex() if isinstance(data, bytes) else None


class DataField(PacketElements, PacketField):
    """A PacketField holding one A-XDR Data."""

    __slots__: list[str] = []

    def __init__(self, name: str, default: Data | None = None) -> None:
        super().__init__(name, default, Data)

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, Any]:
        if not s:
            raise ValueError(f"{self.name}: no bytes left for a Data value")
        return super().getfield(pkt, s)


# --------------------------------------------------------------------------- descriptors

class CosemAttributeDescriptor(DLMSElement):
    """Cosem-Attribute-Descriptor: class-id, instance-id (OBIS), attribute-id (Integer8)."""

    name = "Cosem-Attribute-Descriptor"
    fields_desc = [ShortEnumField("class_id", 1, INTERFACE_CLASSES),
                   ObisField("instance_id", b"\x00" * 6),
                   SignedByteField("attribute_id", 2)]

    def mysummary(self) -> str:
        cls = INTERFACE_CLASSES.get(self.class_id, str(self.class_id))
        return f"{cls} {obis_str(self.instance_id)} attr {self.attribute_id}"


class CosemMethodDescriptor(DLMSElement):
    """Cosem-Method-Descriptor: class-id, instance-id (OBIS), method-id (Integer8)."""

    name = "Cosem-Method-Descriptor"
    fields_desc = [ShortEnumField("class_id", 1, INTERFACE_CLASSES),
                   ObisField("instance_id", b"\x00" * 6),
                   SignedByteField("method_id", 1)]

    def mysummary(self) -> str:
        cls = INTERFACE_CLASSES.get(self.class_id, str(self.class_id))
        return f"{cls} {obis_str(self.instance_id)} method {self.method_id}"


class SelectiveAccessDescriptor(DLMSElement):
    """Selective-Access-Descriptor: access-selector, access-parameters (Data)."""

    name = "Selective-Access-Descriptor"
    fields_desc = [ByteField("access_selector", 1), DataField("access_parameters", None)]


__all__ = [
    "DATA_CLASSES", "MAX_ELEMENTS", "CosemAttributeDescriptor", "CosemMethodDescriptor", "Data",
    "DataArray", "DataBcd", "DataBitString", "DataBoolean", "DataCompactArray", "DataDate",
    "DataDateTime", "DataDontCare", "DataDoubleLong", "DataDoubleLongUnsigned", "DataEnum",
    "DataField", "DataFloat32", "DataFloat64", "DataInteger", "DataLong", "DataLong64",
    "DataLong64Unsigned", "DataLongUnsigned", "DataNull", "DataOctetString", "DataStructure",
    "DataTime", "DataUnknown", "DataUnsigned", "DataUtf8String", "DataVisibleString",
    "SelectiveAccessDescriptor", "data_value",
]
