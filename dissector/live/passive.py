"""Passive TCP capture on an interface with a BPF filter, through Scapy or through tshark
(pyshark); packets are kept as captured."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import signal
import threading
import time
from typing import Any

from dissector.live.base import NET_POLL, Backoff
from dissector.live.dissection import LiveDissection
from dissector.live.rawcapture import LiveError
from dissector.live.tcp import TcpSource

_CAPTURE_PROGRAMS = ("tshark", "dumpcap")
#: First protocol of a tshark frame -> pcap link type (SLL is told from SLL2 by its bytes).
_TSHARK_LINKTYPES = {"eth": 1, "null": 0, "loop": 108, "raw": 101, "ip": 101, "ipv6": 101,
                     "sll": 113}


def tshark_path() -> str | None:
    """The tshark executable on PATH, or None."""
    return shutil.which("tshark")


class PassiveSniffer(TcpSource):
    """Passive capture on an interface with a BPF filter, through Scapy (`engine="scapy"`)
    or tshark via pyshark (`engine="tshark"`); packets are kept as captured."""

    def __init__(self, iface: str, bpf: str, *, engine: str = "scapy",
                 dissection: LiveDissection | None = None, capture_path: str | None = None,
                 ports: dict[int, str | None] | None = None,
                 stop: threading.Event | None = None) -> None:
        if engine not in ("scapy", "tshark"):
            raise LiveError(f"unknown capture engine {engine!r} (scapy or tshark)")
        super().__init__(dissection, stop, capture_path, None, ports)
        self.iface = iface
        self.bpf = bpf
        self.engine = engine
        self._sock: Any = None
        self._sock_linktype = 0

    def describe(self) -> str:
        return f"sniffing {self.iface} with {self.engine} (filter {self.bpf!r})"

    def open(self) -> None:
        if self.engine == "scapy":
            self._sock, self._sock_linktype = self._scapy_socket()
        elif tshark_path() is None:
            raise LiveError("--engine tshark needs tshark (apt-get install tshark)")
        try:
            self.open_capture()
        except LiveError:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            raise

    def _scapy_socket(self) -> tuple[Any, int]:
        import scapy.arch  # sets conf.L2listen / conf.L2socket
        import scapy.layers.l2  # noqa: F401  (link-layer classes for the link type)
        from scapy.config import conf
        from scapy.error import Scapy_Exception

        # On a loopback interface each packet also shows as outgoing: a socket that can
        # send drops those copies, as libpcap does.
        opener = conf.L2socket if self.iface == conf.loopback_name else conf.L2listen
        try:
            sock = opener(iface=self.iface, filter=self.bpf)
        except PermissionError:
            raise LiveError(f"capturing on {self.iface} needs root or CAP_NET_RAW") from None
        except (OSError, Scapy_Exception, ValueError) as exc:
            raise LiveError(f"cannot capture on {self.iface}: {exc}") from None
        linktype = conf.l2types.layer2num.get(sock.LL)
        if linktype is None:
            sock.close()
            raise LiveError(f"{self.iface}: link layer {sock.LL.__name__} not supported")
        return sock, linktype

    def _producers(self) -> None:
        self._spawn(self._scapy_loop if self.engine == "scapy" else self._tshark_loop)

    def _scapy_loop(self) -> None:
        backoff = Backoff(0.5, 5.0)
        while not self.stop_event.is_set():
            if self._sock is None:
                try:
                    self._sock, self._sock_linktype = self._scapy_socket()
                except LiveError:
                    self.stop_event.wait(backoff.next())
                    continue
                backoff.reset()
                self.note("note", "sniff.reopened", f"capturing on {self.iface} again")
            try:
                self._scapy_read(self._sock, self._sock_linktype)
            except OSError as exc:
                self.note("warning", "sniff.interface-lost",
                           f"{self.iface}: {exc}; reopening with back-off")
            finally:
                with contextlib.suppress(OSError):
                    self._sock.close()
                self._sock = None

    def _scapy_read(self, sock: Any, linktype: int) -> None:
        while not self.stop_event.is_set():
            ready, _, _ = select.select([sock], [], [], NET_POLL)
            if not ready:
                continue
            _cls, data, ts = sock.recv_raw()
            if data:
                self.packet(data, float(ts or time.time()), linktype)

    def _tshark_loop(self) -> None:
        backoff = Backoff(0.5, 5.0)
        while not self.stop_event.is_set():
            error = self._tshark_once()
            if self.stop_event.is_set():
                return
            self.note("warning", "sniff.tshark-stopped",
                       f"tshark on {self.iface} stopped ({error or 'no reason given'}); "
                       "restarting with back-off")
            self.stop_event.wait(backoff.next())

    def _tshark_once(self) -> str | None:
        """Run one tshark capture until stopped; the reason if it ended by itself."""
        import pyshark

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        problems: list[str] = []
        try:
            cap = pyshark.LiveCapture(interface=self.iface, bpf_filter=self.bpf,
                                      use_json=True, include_raw=True, eventloop=loop)

            def packet(pkt: Any) -> None:
                try:
                    self._tshark_packet(pkt)
                except (AttributeError, KeyError, TypeError, ValueError) as exc:
                    if not problems:
                        self.note("warning", "sniff.unreadable",
                                   f"tshark gave a packet that cannot be used ({exc}); such "
                                   "packets are skipped")
                    problems.append(f"unreadable packet: {exc}")

            task = loop.create_task(cap.packets_from_tshark(packet))

            async def watch() -> None:
                while not self.stop_event.is_set() and not task.done():
                    await asyncio.sleep(NET_POLL)
                await _terminate(_capture_children())  # tshark stops the dumpcap it reads
                with contextlib.suppress(Exception):  # pyshark's errors on a stopped tshark
                    await cap.close_async()  # reaps what it started
                task.cancel()

            results = loop.run_until_complete(asyncio.gather(task, watch(),
                                                             return_exceptions=True))
            loop.run_until_complete(asyncio.sleep(NET_POLL))  # pipe transports close
            first = results[0]
            if isinstance(first, BaseException) and not isinstance(first,
                                                                   asyncio.CancelledError):
                return " ".join(str(first).split()) or type(first).__name__
            return problems[-1] if problems else None
        except Exception as exc:  # noqa: BLE001 - pyshark raises its own exception types
            return " ".join(str(exc).split()) or type(exc).__name__
        finally:
            loop.close()

    def _tshark_packet(self, pkt: Any) -> None:
        """One pyshark packet (JSON with raw bytes) -> capture and queue."""
        data = bytes(pkt.get_raw_packet())
        first = str(pkt.frame_info.protocols).split(":")[0]
        linktype = _TSHARK_LINKTYPES.get(first)
        if linktype == 113 and len(data) >= 2 and int.from_bytes(data[:2], "big") >= 0x600:
            linktype = 276  # SLL2 starts with the protocol, SLL with a small packet type
        if linktype is None:
            raise ValueError(f"link layer {first!r} not supported")
        self.packet(data, float(pkt.sniff_timestamp), linktype)


def _capture_children() -> list[int]:
    """The process ids of this process's tshark and dumpcap children (the ones pyshark
    started), from /proc (Linux; elsewhere none are found and pyshark's own cleanup is left)."""
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
    found = []
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/comm") as f:
            if f.read().strip() in _CAPTURE_PROGRAMS:
                found.append(pid)
    return found


async def _terminate(pids: list[int]) -> None:
    """Stop capture processes with SIGTERM (tshark then ends the dumpcap it reads from, and
    dumpcap flushes; SIGKILL could orphan it) and wait for them; SIGKILL only if they hang."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 3
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _alive(p)]
        await asyncio.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether a child process still runs (a zombie, exited and not reaped yet, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False
