"""`read --jobs N`: associations dissected in N processes, output merged in capture order.

The parent frames the capture (cheap) and hands every unit of one link to the same worker, so
each worker keeps the whole state of its associations. Workers format their records; the parent
prints them in the order of the units that produced them. In-flight work is bounded, so memory
does not grow with the capture.
"""

from __future__ import annotations

import multiprocessing as mp
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from keys.keystore import Keystore

from .capture import Close, association_stats, feed, units_of_capture
from .model import ApduRecord
from .pipeline import Dissector, Unit

BATCH = 64
WINDOW = 32  # batches in flight per worker


@dataclass
class Rendered:
    """A record as the parent needs it: its text and, for -w, what the pcap writer takes."""

    text: str
    pcap: tuple[bytes, str, float, list[int], str, str] | None


Render = Callable[[ApduRecord], Rendered | None]


def _worker(tasks: Any, results: Any, keystore: Keystore, render: Render,
            keep_stats: bool) -> None:
    dis = Dissector(keystore, keep_stats=keep_stats)
    while True:
        batch = tasks.get()
        if batch is None:
            results.put(("end", dis.finish(), association_stats(dis)))
            return
        out = []
        for seq, item in batch:
            shown = [r for r in (render(rec) for rec in feed(dis, item)) if r is not None]
            out.append((seq, shown))
        results.put(("batch", out))


def run_parallel(path: str, ports: dict[int, str] | None, keystore: Keystore, jobs: int,
                 render: Render, keep_stats: bool = True) -> Iterator[Rendered | tuple[str, Any]]:
    """Rendered records in capture order, then ("end", findings) and ("stats", states)."""
    ctx = mp.get_context("fork")
    tasks = [ctx.Queue() for _ in range(jobs)]
    results = [ctx.Queue() for _ in range(jobs)]
    procs = []
    for w in range(jobs):
        proc = ctx.Process(target=_worker, daemon=True,
                           args=(tasks[w], results[w], keystore, render, keep_stats))
        proc.start()
        procs.append(proc)
    order: deque[tuple[int, int]] = deque()  # (seq, worker) in capture order
    pending: list[list[tuple[int, Unit | Close]]] = [[] for _ in range(jobs)]
    inflight = [0] * jobs
    ready: list[deque[tuple[int, list[Rendered]]]] = [deque() for _ in range(jobs)]
    endings: list[Any] = []

    def receive(w: int) -> None:
        kind, *rest = results[w].get()
        if kind == "batch":
            ready[w].extend(rest[0])
            inflight[w] -= 1
        else:
            endings.append(rest)

    def drain(final: bool) -> Iterator[Rendered]:
        while order:
            seq, w = order[0]
            while not ready[w]:
                if not final and inflight[w] == 0:
                    return
                if inflight[w] == 0:
                    _flush(w)
                receive(w)
            got_seq, shown = ready[w].popleft()
            assert got_seq == seq
            order.popleft()
            yield from shown

    def _flush(w: int) -> None:
        if pending[w]:
            tasks[w].put(pending[w])
            pending[w] = []
            inflight[w] += 1

    try:
        for seq, item in enumerate(units_of_capture(path, ports)):
            link = getattr(item, "link", "")
            w = zlib.crc32(link.encode()) % jobs
            pending[w].append((seq, item))
            order.append((seq, w))
            if len(pending[w]) >= BATCH:
                _flush(w)
                while inflight[w] >= WINDOW:
                    receive(w)
                    yield from drain(False)
            if len(order) > BATCH * WINDOW * jobs:
                yield from drain(False)
        for w in range(jobs):
            _flush(w)
        yield from drain(True)
        for w in range(jobs):
            tasks[w].put(None)
        for w in range(jobs):
            receive(w)
        yield ("end", [f for e in endings for f in e[0]])
        yield ("stats", [s for e in endings for s in e[1]])
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=5)
