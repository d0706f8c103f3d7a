"""What every live source shares: producer threads that write each record to the raw capture
and queue it, a consumer loop that stops on time, back-off, and the stop signals."""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from dissector.live.rawcapture import LiveError, RawCapture
from dissector.stages import UNKNOWN, Direction, note
from layers.expert import Finding, Severity

if TYPE_CHECKING:
    from dissector.live.dissection import LiveDissection

POLL = 0.02  # serial read timeout: the resolution of silence detection
NET_POLL = 0.2  # socket and queue waits: how fast a stop is noticed
GRACE = 1.0  # seconds a stopped source goes on dissecting what is queued


class Backoff:
    """Delays between retries: doubling from `first` up to `cap` seconds."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self.delay = first

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.delay = self.first


class LiveSource:
    """Producer threads write records and queue them; `run` consumes the queue."""

    def __init__(self, dissection: LiveDissection | None, stop: threading.Event | None,
                 capture_path: str | None, linktype: int | None) -> None:
        self.dissection = dissection
        self.stop_event = stop or threading.Event()
        self.hurry = threading.Event()  # a second Ctrl-C: no grace for what is queued
        self.queue: queue.Queue[object] = queue.Queue()
        self.threads: list[threading.Thread] = []
        self.capture_path = capture_path
        self.linktype = linktype
        self.capture: RawCapture | None = None

    def stop(self) -> None:
        self.stop_event.set()

    def open_capture(self) -> None:
        """Open the raw capture file (or, without a path, only count the records)."""
        self.capture = RawCapture(self.capture_path, self.linktype, self.queue.put)

    def note(self, severity: Severity, code: str, message: str, link: str = "",
             direction: Direction = UNKNOWN) -> None:
        """A finding about the source itself (a lost port, a refused connection), queued in
        order with the records."""
        frame_no = self.capture.count if self.capture is not None else 0
        self.queue.put(note(frame_no, time.time(), link, severity, code, message, direction))

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=self._guard, args=(target, *args), daemon=True)
        self.threads = [*(t for t in self.threads if t.is_alive()), thread]
        thread.start()

    def _guard(self, target: Callable[..., None], *args: Any) -> None:
        """A capture file that cannot be written stops everything (nothing may be lost)."""
        try:
            target(*args)
        except LiveError as exc:
            self.note("error", "sniff.capture-failed", f"{exc}; stopping")
            self.stop_event.set()

    def _items(self, duration: float | None) -> Iterator[object]:
        """Queued items until stopped and every producer has finished, then what is left for
        up to `GRACE` seconds (none after a second Ctrl-C); what is still queued after that is
        in the capture file and is counted in a finding instead of dissected."""
        deadline = None if duration is None else time.monotonic() + duration
        stopped: float | None = None
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                self.stop_event.set()
            if self.stop_event.is_set() and stopped is None:
                stopped = time.monotonic()
            if stopped is not None and (self.hurry.is_set()
                                        or time.monotonic() - stopped >= GRACE):
                break
            try:
                item = self.queue.get(timeout=NET_POLL if self.stop_event.is_set() else POLL)
            except queue.Empty:
                if self.stop_event.is_set() and not any(t.is_alive() for t in self.threads):
                    return
                continue
            yield item
        for t in self.threads:  # producers end within NET_POLL of the stop
            t.join(timeout=5)
        dropped = 0
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Finding):
                yield item
            else:
                dropped += getattr(item, "frame_no", None) is not None
                self.consumed(item)
        if dropped:
            frame_no = self.capture.count if self.capture is not None else 0
            yield note(frame_no, time.time(), "", "warning", "sniff.stopped-behind",
                       f"stopped with {dropped} record(s) not dissected yet: they are in the"
                       " capture file (read it to dissect them)")

    def consumed(self, item: object) -> None:
        """A queued item left the queue (a source that counts its backlog overrides this)."""

    def _shutdown(self) -> None:
        self.stop_event.set()
        for thread in list(self.threads):
            thread.join(timeout=5)
        if self.capture is not None:
            self.capture.close()


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, hurry: threading.Event | None = None
                    ) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` (the capture file is closed and `--stats` printed); a
    second SIGINT sets `hurry` (what is queued is not dissected, the ending is the same); a
    third interrupts at once. Outside the main thread, nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            if hurry is None or hurry.is_set():
                raise KeyboardInterrupt
            hurry.set()
        stop.set()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
