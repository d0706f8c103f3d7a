"""Base packet classes: dissection that turns malformed input into findings, never exceptions."""

from __future__ import annotations

from typing import Any

from scapy.config import conf
from scapy.packet import Packet

from .expert import add_finding
from .tree import iter_tree


class DLMSPacket(Packet):
    """A layer whose dissection never raises.

    A field that cannot be decoded stops dissection of this layer: a `malformed.field` finding
    names it and the undecoded bytes are kept as a Raw payload, so nothing is lost.

    Dissected with `key_context=ctx` (a duck-typed object with `decipher(envelope)`, supplied by
    the `keys` package), the ciphered envelopes of the tree are deciphered once dissection is done.
    """

    def __init__(self, _pkt: bytes = b"", *args: Any, key_context: Any = None,
                 **kargs: Any) -> None:
        self.__dict__["key_context"] = key_context
        super().__init__(_pkt, *args, **kargs)

    def dissection_done(self, pkt: Packet) -> None:
        super().dissection_done(pkt)
        ctx = self.__dict__.get("key_context")
        if ctx is not None and pkt is self:
            decipher_tree(self, ctx)

    def do_dissect(self, s: bytes) -> bytes:
        whole = s
        self.raw_packet_cache_fields = {}
        for fld in self.fields_desc:
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
                self.raw_packet_cache = whole[: len(whole) - len(s)]
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
    for p in iter_tree(pkt):
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
