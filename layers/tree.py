"""Walking a dissected packet tree: layers, packet fields, payloads and deciphered plaintext."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from scapy.packet import NoPayload, Packet

#: Deepest packet walked. A-XDR Data (64 levels, `axdr_values.MAX_DEPTH`) inside an APDU
#: inside nested envelopes (`apdu.base.MAX_NESTING`) inside a frame stays well within it, so no
#: finding is left unseen; it only bounds the walk on trees built by hand.
MAX_DEPTH = 256


def iter_tree(pkt: Packet | None, depth: int = 0) -> Iterator[Packet]:
    """Every packet below `pkt` in wire order, pre-order.

    After a packet is yielded, its `deciphered.packet` (if the caller deciphered it meanwhile) is
    walked too, so deciphering while iterating reaches nested ciphered APDUs.
    """
    stack: list[tuple[Any, int]] = [(pkt, depth)]
    pop, push = stack.pop, stack.append
    while stack:
        p, d = pop()
        if p is None or d >= MAX_DEPTH or isinstance(p, NoPayload):
            continue
        yield p
        d += 1
        # pushed in reverse: payload last, after the deciphered plaintext and the field packets
        push((p.payload, d))
        inner = p.__dict__.get("deciphered")
        if inner is not None and isinstance(getattr(inner, "packet", None), Packet):
            push((inner.packet, d))
        fields = p.fields
        for fld in reversed(p.packetfields):
            val = fields.get(fld.name)
            if isinstance(val, list):
                for sub in reversed(val):
                    if isinstance(sub, Packet):
                        push((sub, d))
            elif isinstance(val, Packet):
                push((val, d))


def tree_nodes(pkt: Packet) -> list[Packet]:
    """Every packet of a tree, deciphered plaintext included: the walk `decipher_tree` made
    while deciphering it, else a fresh one."""
    walked = pkt.__dict__.get("tree_nodes")
    return list(walked) if walked is not None else list(iter_tree(pkt))


def deciphered_of(pkt: Packet) -> Any:
    """What deciphering a packet found (`keys.context.DecipherResult`), None for a packet
    that is no ciphered envelope or was not deciphered."""
    return pkt.__dict__.get("deciphered")
