"""`read --jobs N`: associations dissected in N processes, output merged in capture order.

The parent reads the capture once (pcap, TCP reassembly, stream framing) and gives each unit,
with its position in the capture, to the process that owns its link (one process keeps the
whole state of its associations): one of N - 1 worker processes, or the parent itself, which
dissects the share of the links that gives it as much work as each worker (`Owners`, from the
CPU time each spends). So N processes keep N CPUs busy; on traffic in the clear, where reading
and framing are much of the work, the parent's share is small, on ciphered traffic larger.
Workers dissect and render, and answer every unit they get, in order, with one entry per
record (its rendering, or None when the display filter dropped it). The parent numbers the
records in capture order, as the serial run does, and prints them: it knows which process owns
the next unit, so it waits on that worker only. Units in flight are bounded (`IN_FLIGHT`), so
memory does not grow with the capture. No process can wait on another that waits on it: the
parent waits for an answer, or for room in a worker's pipe of units; a worker waits for units
only, its answers written by a thread of its own.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from time import process_time, thread_time
from typing import Any

from dissector.analysis.capture import End, Numbered, units_of_capture
from dissector.analysis.pipeline import Dissector
from dissector.analysis.record import ApduRecord
from dissector.sources.capture import check_capture
from dissector.stages import LinkEvent, Pdu
from keys.keystore import Keystore
from layers.expert import Finding

BATCH = 64  # units per message to a worker
#: A worker's thread switch interval (seconds; Python's default is 0.005): the thread that
#: sends its answers waits no longer than this for the one that dissects.
SWITCH = 0.0005
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
    display filter dropped it); the CPU seconds the worker has used so far."""

    records: list[list[Any]]
    cpu: float


@dataclass(slots=True)
class Ended:
    """Worker -> parent: the end-of-input findings and the association summaries, ranked."""

    findings: Ranked
    summaries: Ranked

    @classmethod
    def of(cls, dis: Dissector) -> Ended:
        """What a dissector has left at the end of the input."""
        return cls(dis.finish_ranked(), dis.tracker.ranked_summaries())


@dataclass(slots=True)
class Failed:
    """Worker -> parent: what the worker raised."""

    message: str


Render = Callable[[ApduRecord], Any]


@dataclass(slots=True)
class Owners:
    """Which process dissects each link (its units and its close event): a worker 0 ..
    workers - 1, or the parent (`workers`). A link is given for good at its first unit (the
    process keeps the link's whole state; one entry per link seen): to the parent while its
    units are under `share` of all units, else to the worker that has had the fewest.

    `share` is what gives the parent as much work as each worker (`balance`, every `WINDOW`
    units). It comes from CPU time measured so far: the parent's per unit of the capture for
    reading it and printing the records (pcap, TCP, framing, the answers, the output), per
    unit it dissected itself, per unit it sent (pickling); a worker's per unit it answered.
    The parent reads every unit, dissects its share and sends the rest; the workers dissect
    the rest. On traffic in the clear, where reading is much of the work, the share is small;
    on ciphered traffic, larger."""

    workers: int
    share: float
    units: list[int]  # per process (the parent last): units of the links it owns
    owned: dict[str, int]
    counted: int = 0  # units since the last `balance`
    dissecting: float = 0.0  # the parent's CPU seconds, dissecting its share
    sending: float = 0.0  # and sending the workers' units
    sent: int = 0  # units sent
    #: per worker: units answered, CPU seconds used (as its last answers said)
    answered: list[tuple[int, float]] = field(default_factory=list)

    WINDOW = 1024
    MOST = 0.5

    def of(self, link: str) -> int:
        """The owner of a link's unit (counted)."""
        w = self.owned.get(link)
        if w is None:
            units = self.units
            parent = self.workers
            if units[parent] < self.share * sum(units):
                w = parent
            else:
                w = min(range(parent), key=units.__getitem__)
            self.owned[link] = w
        self.units[w] += 1
        self.counted += 1
        return w

    def balance(self, busy: float) -> None:
        """A new `share` from the parent's CPU seconds `busy` so far (all its work)."""
        self.counted = 0
        total, own = sum(self.units), self.units[self.workers]
        if not own or not self.sent:
            return
        dissect, send = self.dissecting / own, self.sending / self.sent
        read = max(0.0, busy - self.dissecting - self.sending) / total
        answered = sum(n for n, _ in self.answered)
        per_unit = sum(cpu for _, cpu in self.answered) / answered if answered else \
            dissect + 2 * send  # a worker's CPU time per unit, as measured (or estimated)
        # parent: read + f * dissect + (1 - f) * send == each worker: (1 - f) * per_worker
        per_worker = per_unit / self.workers
        share = (per_worker - read - send) / (dissect - send + per_worker)
        self.share = min(self.MOST, max(0.0, share))


class WorkerError(RuntimeError):
    """A worker process failed; the message names what it raised."""


def _worker(jobs_in: Any, parent_ends: tuple[Any, Any], results: Any, keystore: Keystore,
            render: Render, keep_stats: bool) -> None:
    for conn in parent_ends:  # the parent's ends of the two pipes
        conn.close()
    sys.setswitchinterval(SWITCH)  # the thread that sends the answers gets its turn soon
    out: queue.SimpleQueue[Any] = queue.SimpleQueue()
    sender = threading.Thread(target=_send_all, args=(out, results), daemon=True)
    sender.start()
    try:
        dis = Dissector(keystore, keep_stats=keep_stats)
        for message in iter(jobs_in.recv, None):
            answers: list[list[Any]] = []
            for seq, item in message.units:
                answers.append(_answer(dis, render, seq, item))
            out.put(Answers(answers, process_time()))
        out.put(Ended.of(dis))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        out.put(Failed(f"{exc.__class__.__name__}: {exc}"))
    out.put(None)
    sender.join()


def _answer(dis: Dissector, render: Render, seq: int, item: Unit) -> list[Any]:
    """A unit dissected: per record, its rendering (or its time when the display filter
    dropped it)."""
    dis.position = seq
    return [render(rec) or rec.time for rec in dis.process(item)]


def _send_all(out: queue.SimpleQueue[Any], results: Any) -> None:
    """A worker's messages to the parent, written by a thread of their own: the worker never
    waits for the parent to read."""
    try:
        for message in iter(out.get, None):
            results.send(message)
    except OSError:  # the parent is gone
        pass


def run_parallel(paths: str | list[str], ports: dict[int, str] | None, keystore: Keystore,
                 jobs: int, render: Render, keep_stats: bool = True, count: int | None = None
                 ) -> Iterator[Numbered | End]:
    """The rendered records in capture order, numbered from 1 as a serial run numbers them
    (a record the filter dropped is counted, and given without its rendering), then the
    `End`."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    check_capture(paths)  # files that cannot be opened fail here, at once
    if jobs < 2:
        raise ValueError("run_parallel needs 2 processes or more (the serial run is one)")
    workers = jobs - 1
    parent = workers  # the index of the parent's own share
    ctx = mp.get_context("fork")
    # Two pipes per worker, each end held by one process only, so that a worker that ends
    # breaks them (a write fails, a read finds the end) rather than leaving the parent waiting.
    # Units are written by the parent itself (a queue's feeder thread would wait for the
    # parent's lock on the interpreter, and starve the worker); answers by a thread of the
    # worker's.
    inboxes: list[Any] = []  # the parent's ends: units to each worker
    results: list[Any] = []  # and answers from it
    procs: list[Any] = []
    for w in range(workers):
        units_in, units_out = ctx.Pipe(duplex=False)
        answers_in, answers_out = ctx.Pipe(duplex=False)
        procs.append(ctx.Process(target=_worker, daemon=True,
                                 args=(units_in, (units_out, answers_in), answers_out,
                                       keystore, render, keep_stats)))
        procs[w].start()
        units_in.close()
        answers_out.close()
        for conn in (units_out, answers_in):
            _widen(conn)
        inboxes.append(units_out)
        results.append(answers_in)
    own = Dissector(keystore, keep_stats=keep_stats)  # the parent's share of the links
    owners_of = Owners(workers, 1 / (2 * workers + 1), [0] * jobs, {},
                       answered=[(0, 0.0)] * workers)
    began = thread_time()
    outgoing: list[list[tuple[int, Unit]]] = [[] for _ in range(workers)]
    owners: deque[int] = deque()  # owner of every unit sent and not yet printed, in order
    answers: list[deque[list[Any]]] = [deque() for _ in range(jobs)]
    endings: list[Ended | None] = [None] * jobs
    number = 0

    def receive(w: int) -> None:
        try:
            message = results[w].recv()
        except (EOFError, OSError):  # the worker ended (its end of the pipe closed with it)
            procs[w].join(timeout=5)
            raise WorkerError(f"worker {w} ended without its results"
                              f" (exit code {procs[w].exitcode})") from None
        if isinstance(message, Answers):
            answers[w].extend(message.records)
            owners_of.answered[w] = (owners_of.answered[w][0] + len(message.records), message.cpu)
        elif isinstance(message, Ended):
            endings[w] = message
        else:
            raise WorkerError(f"worker {w} failed: {message.message}")

    def post(w: int, message: Units | None) -> None:
        start = thread_time()
        try:
            inboxes[w].send(message)
            owners_of.sending += thread_time() - start
        except OSError:  # the worker is gone: what it said, or that it ended
            while endings[w] is None:
                receive(w)
            raise WorkerError(f"worker {w} ended before its last units") from None

    def send(w: int) -> None:
        if outgoing[w]:
            post(w, Units(outgoing[w]))
            owners_of.sent += len(outgoing[w])
            outgoing[w] = []

    def drain() -> None:
        """What has come back, without waiting."""
        for v in range(workers):
            while endings[v] is None and results[v].poll():
                receive(v)

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
            w = owners_of.of(getattr(item, "link", ""))
            owners.append(w)
            if owners_of.counted >= owners_of.WINDOW:
                owners_of.balance(thread_time() - began)
            if w == parent:  # dissected here, at once
                start = thread_time()
                answers[parent].append(_answer(own, render, seq, item))
                owners_of.dissecting += thread_time() - start
                if answers[owners[0]] or len(owners) >= IN_FLIGHT:
                    yield from printable(IN_FLIGHT - BATCH if len(owners) >= IN_FLIGHT else None)
                continue
            outgoing[w].append((seq, item))
            if len(outgoing[w]) >= BATCH:
                send(w)
                drain()
                yield from printable(IN_FLIGHT - BATCH if len(owners) >= IN_FLIGHT else None)
        for w in range(workers):
            send(w)
            post(w, None)
        endings[parent] = Ended.of(own)
        yield from printable(0)
        for w in range(workers):
            while endings[w] is None:
                receive(w)
        ended = [e for e in endings if e is not None]
        yield End(_merged([e.findings for e in ended]), _merged([e.summaries for e in ended]))
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=5)
        for conn in (*inboxes, *results):
            conn.close()


#: Bytes a pipe of units holds (Linux's largest for a process without privileges): tens of
#: batches, where the default 64 kB holds about one, and every send would wait for the worker
#: to take the last.
PIPE_BYTES = 1 << 20


def _widen(conn: Any) -> None:
    """Make the pipe under `conn` hold `PIPE_BYTES` where the system allows it."""
    try:
        import fcntl

        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass  # another system, or a lower limit: the default size (sends wait more)


def _merged(ranked: list[Ranked]) -> list[Any]:
    """Items of several workers in the order a serial run gives them (stable on ties)."""
    return [item for _, item in sorted((r for part in ranked for r in part),
                                       key=lambda r: r[0])]
