"""A dissected packet tree as nested JSON (the `fields` key of the JSON output)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from scapy.fields import ConditionalField, EnumField, Field, FlagsField
from scapy.packet import NoPayload, Packet, Raw

from layers.tree import deciphered_of

MAX_DEPTH = 64


def _own_i2repr(fld: Field) -> bool:
    """Whether a field class of this project defines how its values read."""
    return any("i2repr" in k.__dict__ for k in type(fld).__mro__[:-1]
               if k.__module__.split(".")[0] in ("layers", "dissector"))


def _named(fld: Field) -> bool:
    """Whether a field shows ints as names (enums, flags, fields with their own repr)."""
    inner = getattr(fld, "fld", fld)
    return isinstance(inner, (EnumField, FlagsField)) or _own_i2repr(inner)


def _fixed_names(fld: Field) -> bool:
    """Whether a field names an int the same whatever the packet: Scapy's own enum fields
    (a table lookup), not the fields of this project, whose names may depend on the layer."""
    inner = getattr(fld, "fld", fld)
    return isinstance(inner, EnumField) and not _own_i2repr(inner)


Plan = list[tuple[str, Field, "ConditionalField | None", bool, bool]]
_PLANS: dict[type, tuple[str | None, Plan]] = {}
_SHOWN: dict[tuple[int, int], Any] = {}  # (id(field), value) -> JSON, for fixed names


def _plan(cls: type[Packet]) -> tuple[str | None, Plan]:
    """Per layer class, once: its APDU name, and per field (name, field, the ConditionalField
    or None, shows names, names independent of the packet)."""
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = (getattr(cls, "apdu_name", None), [
            (fld.name, fld, fld if isinstance(fld, ConditionalField) else None, _named(fld),
             _fixed_names(fld)) for fld in cls.fields_desc])
    return plan


def layer_name(pkt: Packet) -> str:
    """A layer's name as the outputs give it: its Green Book APDU name, else Scapy's name."""
    return _plan(type(pkt))[0] or pkt.name


def _named_int(pkt: Packet, fld: Field, val: int) -> Any:
    shown = fld.i2repr(pkt, val)
    if isinstance(shown, str) and shown not in (str(val), hex(val)) and \
            not shown.startswith("0x"):
        return {"value": val, "name": shown}
    return val


def _value(pkt: Packet, fld: Field, val: Any, depth: int, named: bool,
           fixed: bool = False) -> Any:
    if type(val) is int:  # the common case first
        if not named:
            return val
        if not fixed:
            return _named_int(pkt, fld, val)
        key = (id(fld), val)
        found = _SHOWN.get(key)
        if found is None:
            if len(_SHOWN) >= 65536:
                _SHOWN.clear()
            found = _SHOWN[key] = _named_int(pkt, fld, val)
        return dict(found) if type(found) is dict else found
    if isinstance(val, (bytes, bytearray)):
        return bytes(val).hex().upper()
    if isinstance(val, list):
        return [_value(pkt, fld, v, depth, named, fixed) for v in val]
    if isinstance(val, Packet):
        return packet_fields(val, depth + 1)
    if isinstance(val, int) and not isinstance(val, bool):
        return _named_int(pkt, fld, val) if named else val
    if isinstance(val, (str, float, bool)) or val is None:
        return val
    return str(val)


def present_fields(pkt: Packet) -> Iterator[tuple[str, Field, Any, bool, bool]]:
    """The fields a dissected packet has (its conditions met), in order: (name, field, value,
    shows names, names independent of the packet). What the JSON tree and the `-V` tree walk."""
    fields, overloaded, defaults = pkt.fields, pkt.overloaded_fields, pkt.default_fields
    for name, fld, cond, named, fixed in _plan(type(pkt))[1]:
        if cond is not None and not cond._evalcond(pkt):
            continue
        if name in fields:
            yield name, fld, fields[name], named, fixed
        elif name in defaults:
            yield name, fld, overloaded[name] if name in overloaded else defaults[name], \
                named, fixed


def packet_fields(pkt: Packet | None, depth: int = 0) -> dict[str, Any] | None:
    """{"layer": name, field: value, ..., "payload": {...}} for a packet and its payloads.

    Deciphered plaintext appears under "deciphered" of the envelope it came from.
    """
    if pkt is None or isinstance(pkt, NoPayload) or depth > MAX_DEPTH:
        return None
    if isinstance(pkt, Raw):
        return {"layer": pkt.name, "load": bytes(pkt.load).hex().upper()}
    apdu_name, plan = _plan(type(pkt))
    out: dict[str, Any] = {"layer": apdu_name or pkt.name}
    fields, overloaded, defaults = pkt.fields, pkt.overloaded_fields, pkt.default_fields
    for name, fld, cond, named, fixed in plan:  # `present_fields`, inlined: the hot path
        if cond is not None and not cond._evalcond(pkt):
            continue
        if name in fields:
            val = fields[name]
        elif name in defaults:
            val = overloaded[name] if name in overloaded else defaults[name]
        else:
            continue
        out[name] = _value(pkt, fld, val, depth, named, fixed)
    res = deciphered_of(pkt)
    if res is not None and getattr(res, "packet", None) is not None:
        out["deciphered"] = packet_fields(res.packet, depth + 1)
    if not isinstance(pkt.payload, NoPayload):
        out["payload"] = packet_fields(pkt.payload, depth + 1)
    return out
