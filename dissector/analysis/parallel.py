"""`read --jobs N`: associations dissected in N processes, output merged in capture order.

The parent reads the capture once (pcap, TCP reassembly, stream framing: a few per cent of the
work) and sends each unit, with its position in the capture, to the worker that owns its link
(by a hash of the link's name, so a worker keeps the whole state of its associations). Workers
dissect and render, and answer every unit they get, in order, with one entry per record (its
rendering, or None when the display filter dropped it). The parent numbers the records in
capture order, as the serial run does, and prints them: it knows which worker owns the next
unit, so it waits on that one only. Units in flight are bounded (`IN_FLIGHT`), so memory does
not grow with the capture, and no process can wait on another that waits on it: the parent only
ever waits for an answer, and workers never wait on the parent to read.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dissector.analysis.capture import End, Numbered, units_of_capture
from dissector.analysis.pipeline import Dissector
from dissector.analysis.record import ApduRecord
from dissector.sources.capture import check_capture
from dissector.stages import LinkEvent, Pdu
from keys.keystore import Keystore
from layers.expert import Finding

BATCH = 64  # units per message to a worker
IN_FLIGHT = 4096  # units sent and not yet answered

Unit = Pdu | LinkEvent | Finding
Ranked = list[tuple[tuple[int, int], Any]]


# -- messages between the parent and a worker ----------------------------------------------
@dataclass(slots=True)
class Units:
    """Parent -> worker: units with their positions in the capture."""

    units: list[tuple[int, Unit]]


@dataclass(slots=True)
class Answers:
    """Worker -> parent: per unit, in order, one entry per record it gave (its time when the
    display filter dropped it)."""

    records: list[list[Any]]


@dataclass(slots=True)
class Ended:
    """Worker -> parent: the end-of-input findings and the association summaries, ranked."""

    findings: Ranked
    summaries: Ranked


@dataclass(slots=True)
class Failed:
    """Worker -> parent: what the worker raised."""

    message: str


Render = Callable[[ApduRecord], Any]


def owner(item: Any, jobs: int) -> int:
    """The worker that dissects a unit (or a link's close event): by its link."""
    return zlib.crc32(getattr(item, "link", "").encode()) % jobs


class WorkerError(RuntimeError):
    """A worker process failed; the message names what it raised."""


def _worker(jobs_in: Any, results: Any, keystore: Keystore, render: Render,
            keep_stats: bool) -> None:
    try:
        dis = Dissector(keystore, keep_stats=keep_stats)
        for message in iter(jobs_in.get, None):
            answers: list[list[Any]] = []
            for seq, item in message.units:
                dis.position = seq
                answers.append([render(rec) or rec.time for rec in dis.process(item)])
            results.put(Answers(answers))
        results.put(Ended(dis.finish_ranked(), dis.tracker.ranked_summaries()))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        results.put(Failed(f"{exc.__class__.__name__}: {exc}"))


def run_parallel(paths: str | list[str], ports: dict[int, str] | None, keystore: Keystore,
                 jobs: int, render: Render, keep_stats: bool = True, count: int | None = None
                 ) -> Iterator[Numbered | End]:
    """The rendered records in capture order, numbered from 1 as a serial run numbers them
    (a record the filter dropped is counted, and given without its rendering), then the
    `End`."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    check_capture(paths)  # files that cannot be opened fail here, at once
    ctx = mp.get_context("fork")
    inboxes = [ctx.Queue() for _ in range(jobs)]
    results = [ctx.Queue() for _ in range(jobs)]
    procs = [ctx.Process(target=_worker, daemon=True,
                         args=(inboxes[w], results[w], keystore, render, keep_stats))
             for w in range(jobs)]
    for proc in procs:
        proc.start()
    outgoing: list[list[tuple[int, Unit]]] = [[] for _ in range(jobs)]
    owners: deque[int] = deque()  # owner of every unit sent and not yet printed, in order
    answers: list[deque[list[Any]]] = [deque() for _ in range(jobs)]
    endings: list[Ended | None] = [None] * jobs
    number = 0

    def receive(w: int) -> None:
        while True:
            try:
                message = results[w].get(timeout=1.0)
                break
            except queue.Empty:
                if not procs[w].is_alive():
                    raise WorkerError(f"worker {w} ended without its results"
                                      f" (exit code {procs[w].exitcode})") from None
        if isinstance(message, Answers):
            answers[w].extend(message.records)
        elif isinstance(message, Ended):
            endings[w] = message
        else:
            raise WorkerError(f"worker {w} failed: {message.message}")

    def send(w: int) -> None:
        if outgoing[w]:
            inboxes[w].put(Units(outgoing[w]))
            outgoing[w] = []

    def printable(down_to: int | None) -> Iterator[Numbered]:
        """The records of the units answered so far, in capture order; with `down_to`,
        waiting for answers until no more than that many units are in flight."""
        nonlocal number
        while owners:
            w = owners[0]
            if not answers[w]:
                if down_to is None or len(owners) <= down_to:
                    return
                send(w)  # the unit waited for may still be in the outgoing batch
                receive(w)
                continue
            owners.popleft()
            for item in answers[w].popleft():
                number += 1
                if isinstance(item, float):  # the record's time: the filter dropped it
                    yield Numbered(number, None, item)
                else:
                    yield Numbered(number, item, item.time)

    try:
        for seq, item in enumerate(units_of_capture(paths, ports, count)):
            w = owner(item, jobs)
            outgoing[w].append((seq, item))
            owners.append(w)
            if len(outgoing[w]) >= BATCH:
                send(w)
                for v in range(jobs):  # what has come back, without waiting
                    while endings[v] is None and not results[v].empty():
                        receive(v)
                yield from printable(IN_FLIGHT // 2 if len(owners) >= IN_FLIGHT else None)
        for w in range(jobs):
            send(w)
            inboxes[w].put(None)
        yield from printable(0)
        for w in range(jobs):
            while endings[w] is None:
                receive(w)
        ended = [e for e in endings if e is not None]
        yield End(_merged([e.findings for e in ended]), _merged([e.summaries for e in ended]))
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=5)
        for q in (*inboxes, *results):
            # units a stopped worker left unread must not hold this process at its exit
            q.cancel_join_thread()
            q.close()


def _merged(ranked: list[Ranked]) -> list[Any]:
    """Items of several workers in the order a serial run gives them (stable on ties)."""
    return [item for _, item in sorted((r for part in ranked for r in part),
                                       key=lambda r: r[0])]
