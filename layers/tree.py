"""Walking a dissected packet tree: layers, packet fields, payloads and deciphered plaintext."""

from __future__ import annotations

from collections.abc import Iterator

from scapy.packet import NoPayload, Packet

#: Deepest packet walked. A-XDR Data (64 levels, `axdr.MAX_DEPTH`) inside an APDU inside nested
#: envelopes (`apdu.base.MAX_NESTING`) inside a frame stays well within it, so no finding is
#: left unseen; it only bounds the walk on trees built by hand.
MAX_DEPTH = 256


def iter_tree(pkt: Packet | None, depth: int = 0) -> Iterator[Packet]:
    """Every packet below `pkt` in wire order, pre-order.

    After a packet is yielded, its `deciphered.packet` (if the caller deciphered it meanwhile) is
    walked too, so deciphering while iterating reaches nested ciphered APDUs.
    """
    p = pkt
    while p is not None and not isinstance(p, NoPayload) and depth < MAX_DEPTH:
        yield p
        for fld in p.packetfields:
            val = p.fields.get(fld.name)
            for sub in val if isinstance(val, list) else (val,):
                if isinstance(sub, Packet):
                    yield from iter_tree(sub, depth + 1)
        inner = p.__dict__.get("deciphered")
        if inner is not None and isinstance(getattr(inner, "packet", None), Packet):
            yield from iter_tree(inner.packet, depth + 1)
        p = p.payload
        depth += 1
