"""Base packet classes: dissection that turns malformed input into findings, never exceptions."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from scapy.config import conf
from scapy.packet import NoPayload, Packet, Raw

from .expert import add_finding
from .tree import iter_tree


class DLMSPacket(Packet):
    """A layer whose dissection never raises.

    A field that cannot be decoded stops dissection of this layer: a `malformed.field` finding
    names it and the undecoded bytes are kept as a Raw payload, so nothing is lost.

    Dissected with `key_context=ctx` (a duck-typed object with `decipher(envelope)`, supplied by
    the `keys` package), the ciphered envelopes of the tree are deciphered once dissection is done.
    """

    # Set by ciphered envelopes; defaults here so that asking any layer's class is a plain
    # class attribute (Scapy's class lookup of a missing name scans the fields first).
    decipher: ClassVar[Any] = None
    family: ClassVar[str] = ""

    def __init__(self, _pkt: bytes = b"", post_transform: Any = None, _internal: int = 0,
                 _underlayer: Packet | None = None, _parent: Packet | None = None,
                 stop_dissection_after: Any = None, key_context: Any = None,
                 **fields: Any) -> None:
        self.__dict__["key_context"] = key_context
        cls = self.__class__
        if isinstance(_pkt, bytearray):
            _pkt = bytes(_pkt)
        defaults = None if fields or post_transform is not None else _quick_defaults(cls, _pkt)
        if defaults is None:
            super().__init__(_pkt, post_transform, _internal, _underlayer, _parent,
                             stop_dissection_after, **fields)
            return
        _init_for_dissection(self, cls, defaults, _pkt, _internal, _underlayer, _parent,
                             stop_dissection_after)

    def dissect(self, s: bytes) -> None:
        """Scapy's `Packet.dissect`, with the payload and the padding built by `dissect_as`."""
        s = self.post_dissect(self.do_dissect(self.pre_dissect(s)))
        payload, pad = self.extract_padding(s)
        self.do_dissect_payload(payload)
        if pad and conf.padding:
            attach(self, dissect_as(conf.padding_layer, pad))

    def do_dissect_payload(self, s: bytes) -> None:
        """Scapy's `Packet.do_dissect_payload`, with the payload built by `dissect_as`."""
        if not s:
            return
        stop = self.stop_dissection_after
        if stop and isinstance(self, stop):
            attach(self, dissect_as(conf.raw_layer, s, internal=1, underlayer=self))
            return
        cls = self.guess_payload_class(s)
        try:
            payload = dissect_as(cls, s, internal=1, underlayer=self, stop_after=stop)
        except KeyboardInterrupt:
            raise
        except Exception:  # as Scapy does: an undecodable payload stays Raw
            if conf.debug_dissector:
                raise
            payload = dissect_as(conf.raw_layer, s, internal=1, underlayer=self)
        attach(self, payload)

    def dissection_done(self, pkt: Packet) -> None:
        super().dissection_done(pkt)
        ctx = self.__dict__.get("key_context")
        if ctx is not None and pkt is self:
            decipher_tree(self, ctx)

    def do_dissect(self, s: bytes) -> bytes:
        whole = s
        cache: dict[str, Any] = {}
        set_slot(self, "raw_packet_cache_fields", cache)
        fields = self.fields
        plan = _PLANS.get(self.__class__) or _plan(self.__class__)
        for fld, name, conditional, cached in plan:
            try:
                s, value = fld.getfield(self, s)
            except Exception as exc:  # noqa: BLE001 - a decoding failure becomes a finding
                if isinstance(s, tuple):
                    # inside a group of bit fields Scapy passes (bytes, bits used): the byte
                    # being split stays with the undecoded rest
                    s = s[0]
                add_finding(self, "error", "malformed.field",
                            f"{self.name}: cannot decode '{fld.name}' from {len(s)} remaining"
                            f" byte(s) ({exc.__class__.__name__})")
                if s:
                    self.add_payload(conf.raw_layer(s))
                # Fields not decoded have no value: rebuilding gives the bytes as received.
                set_slot(self, "raw_packet_cache", whole[: len(whole) - len(s)])
                set_slot(self, "explicit", 1)
                return b""
            if value is None:
                if conditional:
                    continue
            elif cached:
                cache[name] = self._raw_packet_cache_field_value(fld, value, copy=True)
            fields[name] = value
        set_slot(self, "raw_packet_cache", whole[: len(whole) - len(s)] if s else whole)
        set_slot(self, "explicit", 1)
        return s


# Per layer class: (field, name, conditional, value kept for Scapy's check of changed fields)
_PLANS: dict[type, tuple[tuple[Any, str, bool, bool], ...]] = {}


def _plan(cls: type) -> tuple[tuple[Any, str, bool, bool], ...]:
    plan = _PLANS[cls] = tuple(
        (fld, fld.name, bool(fld.isconditional),
         bool(fld.islist or fld.holds_packets or fld.ismutable)) for fld in cls.fields_desc)
    return plan


# What `Packet.__init__` does when it only dissects bytes, without its per-field keyword
# handling (a caught KeyError per field) and attribute hooks: most of the cost of a small
# layer. Used only while Scapy's packet slots are the ones this mirrors (checked below);
# otherwise Scapy's own constructor runs.
_MIRRORED_SLOTS = frozenset({
    "time", "sent_time", "name", "default_fields", "fields", "fieldtype", "overload_fields",
    "overloaded_fields", "packetfields", "original", "explicit", "raw_packet_cache",
    "raw_packet_cache_fields", "_pkt", "post_transforms", "stop_dissection_after", "payload",
    "underlayer", "parent", "_answered", "direction", "sniffed_on", "wirelen", "comments",
    "process_information"})
FAST_INIT = frozenset(Packet.__slots__) == _MIRRORED_SLOTS and \
    Packet.__init__.__code__.co_varnames[:7] == (
        "self", "_pkt", "post_transform", "_internal", "_underlayer", "_parent",
        "stop_dissection_after")
set_slot = object.__setattr__  # sets a Packet slot without Scapy's field lookup
_NO_PAYLOAD = NoPayload()
_DLMS_INIT = DLMSPacket.__init__
_RAW_INIT = Raw.__init__


def _quick_defaults(cls: type, data: Any) -> dict | None:
    """The field defaults Scapy cached for `cls` when bytes are to be dissected the quick way;
    None for Scapy's own constructor: no bytes, Scapy's slots not the ones mirrored, or no
    cache (the first packet of a class, a class without fields, MultipleTypeField)."""
    if not FAST_INIT or type(data) is not bytes or not data:
        return None
    return Packet.class_default_fields.get(cls)


def _init_for_dissection(pkt: Packet, cls: type, defaults: dict, data: bytes, internal: int,
                         underlayer: Packet | None, parent: Packet | None,
                         stop_after: Any) -> None:
    set_slot(pkt, "time", 0.0 if internal else time.time())
    set_slot(pkt, "sent_time", None)
    set_slot(pkt, "name", cls.__name__ if cls._name is None else cls._name)
    set_slot(pkt, "default_fields", defaults)
    set_slot(pkt, "overload_fields", cls._overload_fields)
    set_slot(pkt, "overloaded_fields", {})
    set_slot(pkt, "fields", {})
    set_slot(pkt, "fieldtype", Packet.class_fieldtype.get(cls, {}))
    set_slot(pkt, "packetfields", Packet.class_packetfields.get(cls, []))
    set_slot(pkt, "payload", _NO_PAYLOAD)
    set_slot(pkt, "underlayer", underlayer)
    set_slot(pkt, "parent", parent)
    set_slot(pkt, "original", data)
    set_slot(pkt, "explicit", 0)
    set_slot(pkt, "raw_packet_cache", None)
    set_slot(pkt, "raw_packet_cache_fields", None)
    set_slot(pkt, "wirelen", None)
    set_slot(pkt, "direction", None)
    set_slot(pkt, "sniffed_on", None)
    set_slot(pkt, "comments", None)
    set_slot(pkt, "process_information", None)
    set_slot(pkt, "stop_dissection_after", stop_after)
    set_slot(pkt, "post_transforms", [])
    pkt.dissect(data)
    if not internal:
        pkt.dissection_done(pkt)


def dissect_as(cls: Any, data: bytes, internal: int = 0, parent: Packet | None = None,
               underlayer: Packet | None = None, stop_after: Any = None) -> Packet:
    """`cls(data, _internal=internal, _parent=parent, _underlayer=underlayer,
    stop_dissection_after=stop_after)`, the same packet, without Scapy's call machinery (the
    metaclass call, keyword handling): how fields and payloads dissect the layers they hold."""
    if not isinstance(cls, type):  # a callable standing for a class, as Scapy allows
        return cls(data, _internal=internal, _parent=parent, _underlayer=underlayer,
                   stop_dissection_after=stop_after)
    if "dispatch_hook" in cls.__dict__:  # as the metaclass call does
        try:
            cls = cls.dispatch_hook(data, _internal=internal, _parent=parent,
                                    _underlayer=underlayer, stop_dissection_after=stop_after)
        except Exception:  # as Scapy does: an undecodable layer stays Raw
            if conf.debug_dissector:
                raise
            cls = conf.raw_layer
    pkt = cls.__new__(cls)
    init = cls.__init__
    defaults = _quick_defaults(cls, data)
    if defaults is None or (init is not _DLMS_INIT and init is not _RAW_INIT):
        pkt.__init__(data, _internal=internal, _underlayer=underlayer, _parent=parent,
                     stop_dissection_after=stop_after)
        return pkt
    if init is _DLMS_INIT:
        pkt.__dict__["key_context"] = None
    _init_for_dissection(pkt, cls, defaults, data, internal, underlayer, parent, stop_after)
    return pkt


def attach(pkt: Packet, payload: Packet) -> None:
    """`pkt.add_payload(payload)` for a payload just dissected for `pkt`."""
    if not isinstance(pkt.payload, NoPayload):
        pkt.payload.add_payload(payload)
        return
    set_slot(pkt, "payload", payload)
    set_slot(payload, "underlayer", pkt)
    for t in pkt.aliastypes:
        if t in payload.overload_fields:
            set_slot(pkt, "overloaded_fields", payload.overload_fields[t])
            break


class PacketElements:
    """Mixin for Scapy's packet-holding fields (PacketField, PacketLenField, PacketListField):
    elements are dissected by `dissect_as`, as `cls(m, _parent=pkt)` would dissect them."""

    __slots__ = ()
    cls: Any

    def m2i(self, pkt: Packet | None, m: bytes) -> Packet:
        return dissect_as(self.cls, m, parent=pkt)


class DLMSElement(DLMSPacket):
    """A structure nested in a field (PacketField / PacketListField): it takes only its bytes."""

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        keep_own_bytes(self, len(s))
        return b"", s


def keep_own_bytes(pkt: Packet, rest: int) -> None:
    """Make `pkt.original` the element's own bytes, not every byte after it too: an element of
    a long list would otherwise keep the rest of the list alive (memory quadratic in the list)."""
    original = pkt.original
    if rest and isinstance(original, bytes) and len(original) >= rest:
        object.__setattr__(pkt, "original", original[: len(original) - rest])


def decipher_tree(pkt: Packet, ctx: Any) -> None:
    """Decipher every ciphered envelope of a tree through `ctx`, outermost first.

    A key context that fails on an envelope does not stop dissection: the envelope stays
    ciphered with a `security.decipher-failed` finding (naming the exception, never key bytes).
    """
    nodes = pkt.__dict__["tree_nodes"] = []  # the walk, for whoever walks the tree next
    for p in iter_tree(pkt):
        nodes.append(p)
        decipher = getattr(type(p), "decipher", None)
        if decipher is not None and "deciphered" not in p.__dict__:
            try:
                decipher(p, ctx)
            except Exception as exc:  # noqa: BLE001 - a deciphering failure becomes a finding
                p.__dict__["deciphered"] = None
                add_finding(p, "error", "security.decipher-failed",
                            f"{getattr(p, 'apdu_name', None) or p.name}: deciphering failed"
                            f" ({_safe_reason(exc)})")


def _safe_reason(exc: BaseException) -> str:
    """An exception in words fit for output: the keys package words its messages without key
    bytes; any other exception is named by its class only (its text could quote anything)."""
    name = exc.__class__.__name__
    if exc.__class__.__module__.split(".")[0] == "keys":
        text = " ".join(str(exc).split())[:200]
        return f"{name}: {text}" if text else name
    return name
