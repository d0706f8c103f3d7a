"""The TCP tap: accepts clients, relays each one's bytes unchanged to the meter and back, and
dissects both directions; the raw capture holds the IP packets a sniffer on the wire would
have seen (link type 101)."""

from __future__ import annotations

import contextlib
import random
import selectors
import socket
import threading
import time

from dissector.live.base import NET_POLL, Backoff
from dissector.live.dissection import LiveDissection
from dissector.live.rawcapture import LiveError
from dissector.live.tcp import Frame, Skipped, TcpSource
from dissector.stages import endpoint

LINKTYPE_RAW = 101
MAX_SEGMENT = 32768  # payload per synthesised TCP segment
RECV_SIZE = 65536
#: Payload bytes of one connection queued for dissection at once: past it, what the
#: connection sends is written to the capture but not dissected (a finding says so), so a
#: flood neither grows memory nor delays the other connections' APDUs.
MAX_BACKLOG = 1 << 20


def _v6(ip: str) -> str:
    return ip if ":" in ip else f"::ffff:{ip}"


class SynthTcp:
    """The IP/TCP packets a sniffer between client and meter would have captured, for the
    bytes the tap relays (handshake, data, FIN, RST), with consistent sequence numbers."""

    def __init__(self, client: tuple[str, int], server: tuple[str, int]) -> None:
        self.v6 = ":" in client[0] or ":" in server[0]
        if self.v6:
            client, server = (_v6(client[0]), client[1]), (_v6(server[0]), server[1])
        self.ends = {True: client, False: server}
        self.seq = {True: random.getrandbits(32), False: random.getrandbits(32)}
        self.link = f"tcp {endpoint(*client)}-{endpoint(*server)}"

    def _build(self, from_client: bool, flags: str, payload: bytes = b"") -> bytes:
        from scapy.layers.inet import IP, TCP
        from scapy.layers.inet6 import IPv6

        (sip, sport), (dip, dport) = self.ends[from_client], self.ends[not from_client]
        ip = IPv6(src=sip, dst=dip) if self.v6 else IP(src=sip, dst=dip)
        ack = self.seq[not from_client] % (1 << 32) if "A" in flags else 0
        seg = TCP(sport=sport, dport=dport, seq=self.seq[from_client] % (1 << 32), ack=ack,
                  flags=flags, window=65535)
        pkt = ip / seg / payload if payload else ip / seg
        self.seq[from_client] += len(payload) + ("S" in flags or "F" in flags)
        return bytes(pkt)

    def handshake(self) -> list[bytes]:
        return [self._build(True, "S"), self._build(False, "SA"), self._build(True, "A")]

    def data(self, from_client: bool, data: bytes) -> list[tuple[bytes, int]]:
        """The segments carrying `data`, each with its payload size."""
        return [(self._build(from_client, "PA", data[i:i + MAX_SEGMENT]),
                 len(data[i:i + MAX_SEGMENT])) for i in range(0, len(data), MAX_SEGMENT)]

    def fin(self, from_client: bool) -> bytes:
        return self._build(from_client, "FA")

    def rst(self, from_client: bool) -> bytes:
        return self._build(from_client, "RA")


class TcpTap(TcpSource):
    """Active tap: accepts clients on `listen`, connects each to `forward` (retried with
    back-off for up to `connect_timeout` seconds), relays bytes unchanged both ways and
    dissects them; the capture holds them as IP packets (link type 101)."""

    def __init__(self, listen: tuple[str, int], forward: tuple[str, int], *,
                 dissection: LiveDissection | None = None, capture_path: str | None = None,
                 ports: dict[int, str | None] | None = None, stop: threading.Event | None = None,
                 connect_timeout: float = 10.0, max_backlog: int = MAX_BACKLOG) -> None:
        super().__init__(dissection, stop, capture_path, LINKTYPE_RAW, ports)
        self.max_backlog = max_backlog
        self._skipped: dict[tuple[str, bool], Skipped] = {}
        self.listen = listen
        self.forward = forward
        self.connect_timeout = connect_timeout
        self.address: tuple[str, int] | None = None
        self._listener: socket.socket | None = None
        self.ports.setdefault(forward[1], None)

    def describe(self) -> str:
        host, port = self.address or self.listen
        return (f"TCP tap listening on {endpoint(host, port)}, forwarding to "
                f"{endpoint(*self.forward)}")

    def open(self) -> tuple[str, int]:
        """Bind the listening socket; the address it got (port 0 picks a free one)."""
        try:
            sock = socket.create_server(self.listen)
        except OSError as exc:
            raise LiveError(f"cannot listen on {endpoint(*self.listen)}: "
                            f"{exc.strerror or exc}") from None
        sock.settimeout(NET_POLL)
        self._listener = sock
        self.address = sock.getsockname()[:2]
        try:
            self.open_capture()
        except LiveError:
            sock.close()
            raise
        return self.address

    def _producers(self) -> None:
        self._spawn(self._accept)

    def _accept(self) -> None:
        assert self._listener is not None
        with self._listener:
            while not self.stop_event.is_set():
                try:
                    client, addr = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError as exc:
                    self.note("error", "tap.listen-failed", f"accept failed: {exc}; stopping")
                    self.stop_event.set()
                    return
                self._spawn(self._session, client, addr[:2])

    def _connect(self, client: tuple[str, int]) -> socket.socket | None:
        """Connect to the meter, retrying with back-off; None when it stays unreachable."""
        backoff = Backoff(0.1, 2.0)
        deadline = time.monotonic() + self.connect_timeout
        tries = 0
        link = f"tcp {endpoint(*client)}-{endpoint(*self.forward)}"
        while not self.stop_event.is_set():
            remaining = deadline - time.monotonic()
            try:
                sock = socket.create_connection(self.forward, timeout=max(0.1, min(5.0, remaining)))
            except OSError as exc:
                tries += 1
                delay = backoff.next()
                if time.monotonic() + delay >= deadline:
                    self.note("error", "tap.forward-failed",
                               f"cannot reach the meter at {endpoint(*self.forward)} after "
                               f"{tries} tries ({exc.strerror or exc}); closing the client's "
                               f"connection", link)
                    return None
                if tries == 1:
                    self.note("warning", "tap.forward-retry",
                               f"cannot reach the meter at {endpoint(*self.forward)} "
                               f"({exc.strerror or exc}); retrying with back-off for up to "
                               f"{self.connect_timeout:g} s", link)
                self.stop_event.wait(delay)
                continue
            sock.settimeout(None)
            if tries:
                self.note("note", "tap.forward-reconnected",
                           f"reached the meter at {endpoint(*self.forward)} after {tries + 1} "
                           f"tries", link)
            return sock
        return None

    def _session(self, client: socket.socket, addr: tuple[str, int]) -> None:
        with client:
            upstream = self._connect(addr)
            if upstream is None:
                return
            with upstream:
                synth = SynthTcp(addr, upstream.getpeername()[:2])
                for pkt in synth.handshake():
                    self.packet(pkt, time.time(), LINKTYPE_RAW)
                self._relay(client, upstream, synth)
                for from_client in (True, False):
                    self._resume(synth.link, from_client)

    def _relay(self, client: socket.socket, upstream: socket.socket, synth: SynthTcp) -> None:
        peers = {True: upstream, False: client}
        reading = {True, False}
        with selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ, True)
            sel.register(upstream, selectors.EVENT_READ, False)
            while reading and not self.stop_event.is_set():
                for key, _ in sel.select(NET_POLL):
                    from_client: bool = key.data
                    try:
                        data = key.fileobj.recv(RECV_SIZE)  # type: ignore[union-attr]
                    except OSError as exc:
                        self._reset(synth, from_client, exc)
                        return
                    if not data:
                        self._resume(synth.link, from_client)
                        self.packet(synth.fin(from_client), time.time(), LINKTYPE_RAW)
                        sel.unregister(key.fileobj)
                        reading.discard(from_client)
                        if not from_client and True in reading:
                            self.note("warning", "tap.server-closed",
                                       f"the meter at {endpoint(*self.forward)} closed the "
                                       "connection first; passing the close on to the client",
                                       synth.link)
                        with contextlib.suppress(OSError):
                            peers[from_client].shutdown(socket.SHUT_WR)
                        continue
                    now = time.time()
                    for pkt, size in synth.data(from_client, data):
                        self._data(synth, from_client, pkt, size, now)
                    try:
                        peers[from_client].sendall(data)
                    except OSError as exc:
                        self._reset(synth, not from_client, exc)
                        return

    def _data(self, synth: SynthTcp, from_client: bool, pkt: bytes, size: int,
              now: float) -> None:
        """One data segment: written to the capture, and queued for dissection unless the
        connection's backlog is full (then counted, and said when dissection resumes)."""
        assert self.capture is not None
        link = synth.link
        with self._backlog_lock:
            queued = self.backlog.get(link, 0)
            full = queued + size > self.max_backlog and queued > 0
            if not full:
                self.backlog[link] = queued + size
        key = (link, from_client)
        if full:
            frame_no = self.capture.record(pkt, now, None, linktype=LINKTYPE_RAW)
            skipped = self._skipped.get(key)
            if skipped is None:
                ends = (synth.ends[from_client], synth.ends[not from_client])
                skipped = self._skipped[key] = Skipped(link, ends, from_client, frame_no)
            skipped.add(frame_no, now, size)
            return
        self._resume(link, from_client)
        self.capture.record(pkt, now, lambda n: Frame(n, now, LINKTYPE_RAW, pkt, link, size),
                            linktype=LINKTYPE_RAW)

    def _resume(self, link: str, from_client: bool) -> None:
        """Dissection goes on for one side of a connection: what it skipped is said first."""
        skipped = self._skipped.pop((link, from_client), None)
        if skipped is not None:
            self.queue.put(skipped)

    def _reset(self, synth: SynthTcp, from_client: bool, exc: OSError) -> None:
        self._resume(synth.link, from_client)
        self.packet(synth.rst(from_client), time.time(), LINKTYPE_RAW)
        who = "client" if from_client else f"meter at {endpoint(*self.forward)}"
        self.note("warning", "tap.client-reset" if from_client else "tap.server-reset",
                   f"the {who} dropped the connection ({exc.strerror or exc}); the other "
                   "side is closed too", synth.link)
