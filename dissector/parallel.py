"""`read --jobs N`: associations dissected in N processes, output merged in capture order.

Every worker reads the capture itself (framing is a few per cent of the work) and dissects the
units of the links it owns (a link goes to one worker by a hash of its name, so a worker keeps
the whole state of its associations), formats its records and sends them, tagged with the
unit's position in the capture, to the parent. The parent only merges: it prints records in
capture order and numbers them as the serial run does. Queues are bounded, so memory does not
grow with the capture; the parent never waits on a worker that is merely idle, because every
worker also reports how far through the capture it has come.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from keys.keystore import Keystore

from .capture import feed, units_of_capture
from .model import ApduRecord
from .pipeline import Dissector

BATCH = 64  # records per message
STRIDE = 512  # units a worker may go through without reporting its progress
WINDOW = 64  # messages in flight per worker
DONE = float("inf")


@dataclass
class Rendered:
    """A record as the parent needs it: its text and, for -w, what the pcap writer takes.

    `number` is the record number the text was formatted with; a worker's numbers count only
    its own records, and the parent puts the capture-wide number in (`renumbered`).
    """

    text: str
    pcap: tuple[bytes, str, float, str] | None
    number: int = 0
    mode: str = "summary"

    def renumbered(self, number: int) -> str:
        """The text with record number `number`: the number opens every format's text."""
        if number == self.number:
            return self.text
        if self.mode == "json":
            old, new = f'{{"number": {self.number},', f'{{"number": {number},'
        else:
            old, new = f"{self.number:4d} ", f"{number:4d} "
        if not self.text.startswith(old):
            raise ValueError(f"record text does not start with its number {self.number}")
        return new + self.text[len(old):]


Render = Callable[[ApduRecord], Rendered | None]


def owner(item: Any, jobs: int) -> int:
    """The worker that dissects a unit (or a link's close event): by its link."""
    return zlib.crc32(getattr(item, "link", "").encode()) % jobs


class WorkerError(RuntimeError):
    """A worker process failed; the message names what it raised."""


def _worker(w: int, jobs: int, paths: list[str], ports: dict[int, str] | None,
            keystore: Keystore, render: Render, keep_stats: bool, results: Any) -> None:
    try:
        dis = Dissector(keystore, keep_stats=keep_stats)
        out: list[tuple[int, list[Rendered]]] = []
        shown_count = 0
        reported = -1
        seq = -1
        for seq, item in enumerate(units_of_capture(paths, ports)):
            if owner(item, jobs) == w:
                dis.position = seq
                shown = [r for r in (render(rec) for rec in feed(dis, item)) if r is not None]
                if shown:
                    out.append((seq, shown))
                    shown_count += len(shown)
            if shown_count >= BATCH or seq - reported >= STRIDE:
                results.put(("batch", seq, out))
                out, shown_count, reported = [], 0, seq
        results.put(("batch", DONE, out))
        results.put(("end", dis.finish_ranked(), dis.tracker.ranked_summaries()))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        from .sources import CaptureError

        kind = "capture-error" if isinstance(exc, CaptureError) else "error"
        results.put((kind, f"{exc.__class__.__name__}: {exc}" if kind == "error" else str(exc)))


def run_parallel(paths: str | list[str], ports: dict[int, str] | None, keystore: Keystore,
                 jobs: int, render: Render, keep_stats: bool = True
                 ) -> Iterator[Rendered | tuple[str, Any]]:
    """Rendered records in capture order, numbered from 1 across workers, then
    ("end", findings) and ("stats", states)."""
    from .sources import CaptureError, check_capture

    paths = [paths] if isinstance(paths, str) else list(paths)
    check_capture(paths)  # files that cannot be opened fail here, at once
    ctx = mp.get_context("fork")
    results = [ctx.Queue(maxsize=WINDOW) for _ in range(jobs)]
    procs = [ctx.Process(target=_worker, daemon=True,
                         args=(w, jobs, paths, ports, keystore, render, keep_stats, results[w]))
             for w in range(jobs)]
    for proc in procs:
        proc.start()
    ready: list[deque[tuple[int, list[Rendered]]]] = [deque() for _ in range(jobs)]
    mark = [-1.0] * jobs  # every unit up to here has been through worker w
    endings: list[Any] = [None] * jobs

    def receive(w: int) -> None:
        while True:
            try:
                kind, *rest = results[w].get(timeout=1.0)
                break
            except queue.Empty:
                if not procs[w].is_alive():
                    raise WorkerError(f"worker {w} ended without its results"
                                      f" (exit code {procs[w].exitcode})") from None
        if kind == "batch":
            mark[w] = rest[0]
            ready[w].extend(rest[1])
        elif kind == "end":
            endings[w] = rest
        elif kind == "capture-error":
            raise CaptureError(rest[0])
        else:
            raise WorkerError(f"worker {w} failed: {rest[0]}")

    try:
        number = 0
        while True:
            heads = [(ready[w][0][0], w) for w in range(jobs) if ready[w]]
            first = min(heads) if heads else None
            # a worker with nothing queued may still hold an earlier unit: hear from it first
            lagging = [w for w in range(jobs) if not ready[w] and mark[w] != DONE
                       and (first is None or mark[w] < first[0])]
            if lagging:
                receive(lagging[0])
                continue
            if first is None:
                break
            _, shown = ready[first[1]].popleft()
            for item in shown:
                number += 1
                item.text = item.renumbered(number)
                item.number = number
                yield item
        for w in range(jobs):
            while endings[w] is None:
                receive(w)
        yield ("end", _merged([e[0] for e in endings]))
        yield ("stats", _merged([e[1] for e in endings]))
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=5)


def _merged(ranked: list[list[tuple[tuple[int, int], Any]]]) -> list[Any]:
    """Items of several workers in the order a serial run gives them (stable on ties)."""
    return [item for _, item in sorted((r for part in ranked for r in part),
                                       key=lambda r: r[0])]
