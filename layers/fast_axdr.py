"""A-XDR Data read straight into the JSON form, without Scapy Packets (for `layers.fastapdu`).

`read_data(buf, pos, depth, state)` gives the `packet_fields` form of the Data at `pos` of one
`bytes` buffer as JSON text (what `json.dumps` writes of that form, made here without the
dict) and where it ends; `data_summary` its `mysummary`. The names come from the
layers' own fields and tables (`named_values`), so the words live in the layer classes.
Anything these readers are not sure of (an unknown or compact-array type tag, a length or count
the bytes cannot hold, nesting past the bounds) raises `Unsure`; the caller then leaves the
APDU to the Packet path. Valid input takes no exception.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as json_string
from typing import Any, TypeVar

from scapy.fields import ConditionalField, EnumField, Field, FlagsField
from scapy.packet import Packet

from .axdr import DATA_CLASSES, MAX_ELEMENTS
from .axdr_datetime import date_time_value
from .axdr_values import DATA_TYPES, MAX_DEPTH, bit_text, number_value, string_value

#: Deepest packet `dissector.output.fields.packet_fields` writes out (its MAX_DEPTH; the APDU
#: is depth 0): a Data nested deeper reads `null` there, so it is left to the Packet path here.
JSON_MAX_DEPTH = 64
#: Levels the JSON of an APDU read here may sit below the top and still be the same: a
#: deciphered APDU is written one level down, under its envelope's "deciphered".
NEST_MARGIN = 2
#: Deepest Data node read here (the APDU's fields are depth 1); within the A-XDR bound too.
DEPTH_LIMIT = min(JSON_MAX_DEPTH - NEST_MARGIN, MAX_DEPTH)


class Unsure(ValueError):
    """The fast reader cannot promise the Packet path's result: the Packet path decides."""


_R = TypeVar("_R")


def read_or_none(read: Callable[[bytes], _R] | None, data: bytes) -> _R | None:
    """What the fast reader `read` gives for `data` (as `bytes`), or None when there is no
    reader for it or the reader raises (`Unsure`, or whatever malformed bytes set off): the
    Packet path decides."""
    if read is None:
        return None
    try:
        return read(bytes(data) if type(data) is not bytes else data)
    except Exception:  # noqa: BLE001 - anything unsure or malformed is the Packet path's
        return None


# --------------------------------------------------------------------------- names of fields

def field_of(cls: type[Packet], name: str) -> Field:
    """The field `name` of a layer class (a ConditionalField's inner field)."""
    fld = next(f for f in cls.fields_desc if f.name == name)
    return getattr(fld, "fld", fld) if isinstance(fld, ConditionalField) else fld


def shows_names(fld: Field) -> bool:
    """Whether `packet_fields` shows this field's ints as names: Scapy's enum and flag fields
    and the project's fields with an `i2repr` of their own."""
    if isinstance(fld, EnumField | FlagsField):
        return True
    return any("i2repr" in k.__dict__ for k in type(fld).__mro__[:-1]
               if k.__module__.split(".")[0] in ("layers", "dissector"))


def shown_name(fld: Field, value: int) -> str | None:
    """The name `packet_fields` gives `value` of `fld` (`{"value", "name"}`), None for a plain
    int: the field's own words, kept when they are more than the number."""
    shown = fld.i2repr(None, value)
    if isinstance(shown, str) and shown not in (str(value), hex(value)) and \
            not shown.startswith("0x"):
        return shown
    return None


def layer_name(cls: type[Packet]) -> str:
    """The name a dissected packet of `cls` has (`pkt.name`: Scapy keeps it as `_name`)."""
    name = cls._name
    return cls.__name__ if name is None else name


def named_values(cls: type[Packet], name: str) -> tuple[str | None, ...]:
    """Per byte value 0..255, the name shown for field `name` of `cls` (None: a plain int)."""
    fld = field_of(cls, name)
    if not shows_names(fld):
        return (None,) * 256
    return tuple(shown_name(fld, v) for v in range(256))


def named_text(value: int, name: str | None) -> str:
    """`value` with its shown name (None: a plain int) as JSON text, as `json.dumps` writes
    `packet_fields`'s form of it."""
    return str(value) if name is None else f'{{"value": {value}, "name": {json_string(name)}}}'


def named_texts(cls: type[Packet], name: str) -> tuple[str, ...]:
    """Per byte value 0..255, field `name` of `cls` as JSON text (`named_text`)."""
    return tuple(named_text(v, n) for v, n in enumerate(named_values(cls, name)))


def number_text(value: float) -> str:
    """An int or float as `json.dumps` writes it."""
    if type(value) is float and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    return repr(value)


# --------------------------------------------------------------------------- the Data types

_K_NULL, _K_SEQ, _K_BOOL, _K_BITS, _K_FIXED, _K_OCTETS, _K_TEXT, _K_TIME = range(1, 9)
#: tag -> kind of reading; 0: not read here (unknown tags, compact-array).
_KIND = [0] * 256
for _tag, _kind in ((0, _K_NULL), (255, _K_NULL), (1, _K_SEQ), (2, _K_SEQ), (3, _K_BOOL),
                    (4, _K_BITS), (9, _K_OCTETS), (10, _K_TEXT), (12, _K_TEXT), (25, _K_TIME),
                    (26, _K_TIME), (27, _K_TIME)):
    _KIND[_tag] = _kind
for _tag in (5, 6, 13, 15, 16, 17, 18, 20, 21, 22, 23, 24):
    _KIND[_tag] = _K_FIXED
_KIND_OF = tuple(_KIND)

#: tag -> the layer name of its Data class and the shown type name.
_LAYER = {tag: layer_name(cls) for tag, cls in DATA_CLASSES.items()}
_TYPE_NAMES = named_values(DATA_CLASSES[0], "type")
#: tag -> the JSON text a Data node of that type starts with: its layer and type, then `, `
#: (the whole node for null-data and don't-care).
_HEAD = {tag: f'{{"layer": {json_string(_LAYER[tag])}, "type": '
              f'{named_text(tag, _TYPE_NAMES[tag])}' + ("}" if kind == _K_NULL else ", ")
         for tag, kind in enumerate(_KIND_OF) if kind}
#: fixed-size values: tag -> (unpack_from of the layer field's struct, size).
_FIXED: dict[int, tuple[Callable[..., tuple[Any, ...]], int]] = {
    tag: (field_of(DATA_CLASSES[tag], "value").struct.unpack_from,
          field_of(DATA_CLASSES[tag], "value").sz)
    for tag, kind in enumerate(_KIND_OF) if kind == _K_FIXED}
_FIXED_NAMED = {tag: named_values(DATA_CLASSES[tag], "value") for tag in _FIXED}
_FLOATS = frozenset(tag for tag in _FIXED if field_of(DATA_CLASSES[tag], "value").fmt[-1] in "fd")
_BOOL_TEXTS = named_texts(DATA_CLASSES[3], "value")
_TIME_SIZE = {tag: field_of(DATA_CLASSES[tag], "value").size for tag in (25, 26, 27)}
#: Whether the layers still write Data as read here: every type named, fixed-size values,
#: counts and lengths plain numbers. If not, `layers.fastapdu` leaves every APDU to the Packet
#: path (tests/test_fast_decode.py fails on it).
DATA_ENABLED = all(_TYPE_NAMES[tag] is not None for tag, kind in enumerate(_KIND_OF) if kind) \
    and not any(any(names) for names in _FIXED_NAMED.values()) \
    and not any(shows_names(field_of(DATA_CLASSES[tag], name))
                for tag, name in ((1, "count"), (2, "count"), (4, "length"), (9, "length"),
                                  (10, "length"), (12, "length")))


def read_length(buf: bytes, pos: int) -> tuple[int, int]:
    """An A-XDR length at `pos` (as `layers.fields.decode_length`) and the position after it."""
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    n = first & 0x7F
    end = pos + 1 + n
    if n == 0 or n > 4 or end > len(buf):
        raise Unsure("length prefix")
    return int.from_bytes(buf[pos + 1:end], "big"), end


def read_data(buf: bytes, pos: int, depth: int, state: list[Any]) -> tuple[str, int]:
    """The Data at `pos` in `packet_fields` form as JSON text, and where it ends. `depth` is
    its depth in the JSON tree; `state` is [elements of the outermost Data so far, first
    octet-string value of the APDU (None until one is read)]."""
    tag = buf[pos]
    kind = _KIND_OF[tag]
    pos += 1
    if kind == _K_FIXED:
        unpack, size = _FIXED[tag]
        value = unpack(buf, pos)[0]
        text = number_text(value) if tag in _FLOATS else str(value)
        return f'{_HEAD[tag]}"value": {text}}}', pos + size
    if kind == _K_SEQ:
        count, pos = read_length(buf, pos)
        if count:
            if depth >= DEPTH_LIMIT or count > len(buf) - pos:
                raise Unsure("nesting or count")
            state[0] += count
            if state[0] > MAX_ELEMENTS:
                raise Unsure("too many elements")
        values = []
        append = values.append
        depth += 1
        for _ in range(count):
            node, pos = read_data(buf, pos, depth, state)
            append(node)
        return f'{_HEAD[tag]}"count": {count}, "values": [{", ".join(values)}]}}', pos
    if kind == _K_OCTETS or kind == _K_TEXT:
        n, pos = read_length(buf, pos)
        end = pos + n
        if end > len(buf):
            raise Unsure("string overruns")
        value = buf[pos:end]
        if kind == _K_OCTETS and state[1] is None:
            state[1] = value
        return f'{_HEAD[tag]}"length": {n}, "value": "{value.hex().upper()}"}}', end
    if kind == _K_NULL:
        return _HEAD[tag], pos
    if kind == _K_BOOL:
        return f'{_HEAD[3]}"value": {_BOOL_TEXTS[buf[pos]]}}}', pos + 1
    if kind == _K_TIME:
        end = pos + _TIME_SIZE[tag]
        if end > len(buf):
            raise Unsure("date-time overruns")
        return f'{_HEAD[tag]}"value": "{buf[pos:end].hex().upper()}"}}', end
    if kind == _K_BITS:
        n, pos = read_length(buf, pos)
        end = pos + (n + 7) // 8
        if end > len(buf):
            raise Unsure("bit-string overruns")
        return f'{_HEAD[4]}"length": {n}, "value": "{buf[pos:end].hex().upper()}"}}', end
    raise Unsure(f"Data type {tag} not read here")


def data_summary(buf: bytes, pos: int) -> str:
    """`Data.mysummary()` of the Data at `pos` that `read_data` read: its type and Python
    value."""
    tag = buf[pos]
    kind = _KIND_OF[tag]
    pos += 1
    if kind == _K_SEQ:
        value: Any = f"[{read_length(buf, pos)[0]}]"
    elif kind == _K_FIXED:
        value = number_value(_FIXED[tag][0](buf, pos)[0])
    elif kind == _K_OCTETS or kind == _K_TEXT:
        n, pos = read_length(buf, pos)
        value = string_value(tag, buf[pos:pos + n])
    elif kind == _K_BOOL:
        value = bool(buf[pos])
    elif kind == _K_TIME:
        value = date_time_value(buf[pos:pos + _TIME_SIZE[tag]])
    elif kind == _K_BITS:
        n, pos = read_length(buf, pos)
        value = bit_text(buf[pos:pos + (n + 7) // 8], n)
    else:
        value = None
    return f"{DATA_TYPES.get(tag, 'data')} {value}"


__all__ = ["DATA_ENABLED", "DEPTH_LIMIT", "JSON_MAX_DEPTH", "NEST_MARGIN", "Unsure",
           "data_summary", "field_of", "json_string", "layer_name",
           "named_text", "named_texts", "named_values", "number_text", "read_data",
           "read_length", "shown_name", "shows_names"]
