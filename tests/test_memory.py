"""Dissection does not hold on to what it has written: records are released as they go."""

from __future__ import annotations

import gc
import weakref

from dissector.analysis.pipeline import Dissector
from dissector.stages import Pdu

GET = bytes.fromhex("C001C100080000010000FF0200")
RESPONSE = bytes.fromhex("C401C100090C07EA0B180208291400000000")


def test_records_are_released_after_use() -> None:
    dis = Dissector()
    refs = []
    for i in range(2000):
        for data, direction in ((GET, "client->server"), (RESPONSE, "server->client")):
            for rec in dis.feed(Pdu(data, "raw", [i], float(i), "tcp a-b", direction)):
                refs.append(weakref.ref(rec))
    gc.collect()
    alive = sum(1 for r in refs if r() is not None)
    assert len(refs) == 4000
    assert alive <= 2, alive


def test_unanswered_requests_are_bounded() -> None:
    from dissector.analysis.tracker import MAX_PENDING

    dis = Dissector()
    for i in range(MAX_PENDING * 3):
        list(dis.feed(Pdu(GET, "raw", [i], float(i), "tcp a-b", "client->server")))
    assert len(dis.tracker.get("tcp a-b").pending) <= MAX_PENDING
