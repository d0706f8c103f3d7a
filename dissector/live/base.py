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
from layers.expert import Severity

if TYPE_CHECKING:
    from dissector.live.dissection import LiveDissection

POLL = 0.02  # serial read timeout: the resolution of silence detection
NET_POLL = 0.2  # socket and queue waits: how fast a stop is noticed


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
        """Queued items until stopped and every producer has finished; then what is left."""
        deadline = None if duration is None else time.monotonic() + duration
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                self.stop_event.set()
            try:
                item = self.queue.get(timeout=NET_POLL if self.stop_event.is_set() else POLL)
            except queue.Empty:
                if self.stop_event.is_set() and not any(t.is_alive() for t in self.threads):
                    break
                continue
            yield item
        while True:
            try:
                yield self.queue.get_nowait()
            except queue.Empty:
                return

    def _shutdown(self) -> None:
        self.stop_event.set()
        for thread in list(self.threads):
            thread.join(timeout=5)
        if self.capture is not None:
            self.capture.close()


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` (the capture file is closed and `--stats` printed); a
    second SIGINT interrupts at once. Outside the main thread, nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
