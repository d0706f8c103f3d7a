"""pcap and pcapng files read with bounds that do not depend on what the file claims.

A record is read whole up to `MAX_RECORD` bytes (libpcap's and Wireshark's largest snap
length), whatever the snap length of the file. A length beyond the bounds is a `Damage`, not
an allocation: a pcapng block too long to hold is skipped in pieces of `CHUNK` bytes (memory
stays flat however long the claim) and reading resyncs after it when its trailing length
agrees; a pcap record has no trailing length to resync on, so the file stops there. A file
that ends inside a record, or a block whose two lengths differ, is a `Damage` too.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from layers.expert import Severity

MAX_RECORD = 262_144  # captured bytes of one record (libpcap's MAXIMUM_SNAPLEN)
MAX_OPTIONS = 1 << 16  # bytes of options (comments, flags) held with one record
MAX_BLOCK = 28 + MAX_RECORD + MAX_OPTIONS  # a pcapng block read into memory
CHUNK = 1 << 16  # bytes read at once while skipping

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"
BYTE_ORDER = {b"\x1a\x2b\x3c\x4d": ">", b"\x4d\x3c\x2b\x1a": "<"}
STREAM_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)  # a damaged stream, I/O
_SHB, _IDB, _PB, _SPB, _EPB = 0x0A0D0D0A, 1, 2, 3, 6


UNREADABLE = "not a readable pcap or pcapng file"


class FormatError(Exception):
    """Not a pcap or pcapng file, or its first header is unreadable."""


@dataclass(slots=True)
class FileRecord:
    """One captured packet: its bytes and what the file says about it."""

    data: bytes
    linktype: int
    time: float | None  # None: the block has no timestamp (pcapng simple packet block)
    direction: int = 0  # pcapng EPB flags bits 0-1 (1 inbound, 2 outbound)
    comments: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class Damage:
    """What is wrong with the file at this point. `record` is true when a record was lost
    (it keeps its frame number); `fatal` when the rest of the file is not read."""

    severity: Severity
    code: str
    message: str
    record: bool = False
    fatal: bool = False


@dataclass(slots=True)
class _Interface:
    linktype: int
    snaplen: int
    tsresol: int = 1_000_000  # units per second


BZIP2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were read already: they are given again first, so a pipe
    (standard input, a FIFO) needs no seek."""

    def __init__(self, prefix: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self.prefix = prefix
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.prefix:
            n = min(len(buffer), len(self.prefix))
            buffer[:n] = self.prefix[:n]
            self.prefix = self.prefix[n:]
            return n
        data = self.rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self.rest.close()
        super().close()


def open_stream(handle: BinaryIO) -> tuple[BinaryIO, bytes]:
    """The decompressed stream of a capture file or pipe (gzip, bzip2 and xz are undone) and
    its first 4 bytes. Nothing is sought: standard input and FIFOs are read as files are."""
    try:
        head = handle.read(6)
        stream: BinaryIO = io.BufferedReader(_Prefixed(head, handle))  # type: ignore[arg-type]
        if head[:2] == GZIP_MAGIC:
            stream = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[assignment]
        elif head[:3] == BZIP2_MAGIC:
            stream = bz2.BZ2File(stream)  # type: ignore[assignment]
        elif head == XZ_MAGIC:
            stream = lzma.LZMAFile(stream)  # type: ignore[assignment]
        elif head[:4] == ZSTD_MAGIC:
            raise FormatError("zstd-compressed: decompress it first (zstd -dc FILE | "
                              "dlms-dissect read -)")
        magic = stream.read(4)
    except STREAM_ERRORS as exc:
        raise FormatError(f"{UNREADABLE} (its compressed stream: {exc})") from None
    if magic not in PCAP_MAGICS and magic != PCAPNG_MAGIC:
        raise FormatError("not a pcap or pcapng capture file" if magic else
                          "empty file, not a capture")
    return stream, magic


class CaptureFile:
    """The records of one pcap or pcapng stream; `records()` yields `FileRecord`s and
    `Damage`s in file order and never raises once the header was read."""

    def __init__(self, handle: BinaryIO) -> None:
        self.f, magic = open_stream(handle)
        self.pcapng = magic == PCAPNG_MAGIC
        self.linktype = 0
        self.endian = "<"
        self.scale = 1e-6
        self.interfaces: list[_Interface] = []
        self.blocks = 0
        if self.pcapng:
            self._pending: Damage | None = self._section(first=True)
            self.blocks = 1
        else:
            self.endian, self.scale = PCAP_MAGICS[magic]
            head = self._read(20)
            if len(head) < 20:
                raise FormatError(f"{UNREADABLE} (it ends inside its header)")
            self.linktype = struct.unpack(self.endian + "HHIIII", head)[5]
            self._pending = None

    def close(self) -> None:
        """Close the stream (and the file under it)."""
        try:
            self.f.close()
        except STREAM_ERRORS:
            pass

    def records(self) -> Iterator[FileRecord | Damage]:
        """Every record of the file, and what is wrong with it where it is wrong."""
        try:
            yield from (self._pcapng() if self.pcapng else self._pcap())
        except STREAM_ERRORS as exc:
            yield Damage("warning", "capture.truncated",
                         f"the compressed stream is damaged after block {self.blocks} ({exc}); "
                         "the rest of the file is ignored", fatal=True)

    # -- reading with bounds -------------------------------------------------------------
    def _read(self, n: int) -> bytes:
        """At most `n` bytes (short at the end of the file); `n` is below `MAX_BLOCK`."""
        return self.f.read(n)

    def _skip(self, n: int) -> int:
        """Read and drop `n` bytes in pieces; how many the file had."""
        done = 0
        while done < n:
            piece = self.f.read(min(CHUNK, n - done))
            if not piece:
                break
            done += len(piece)
        return done

    # -- pcap ------------------------------------------------------------------------------
    def _pcap(self) -> Iterator[FileRecord | Damage]:
        fmt = self.endian + "IIII"
        while True:
            head = self._read(16)
            if not head:
                return
            self.blocks += 1
            if len(head) < 16:
                yield Damage("warning", "capture.truncated",
                             f"the file ends inside the header of record {self.blocks}",
                             record=True, fatal=True)
                return
            sec, frac, caplen, _wirelen = struct.unpack(fmt, head)
            if caplen > MAX_RECORD:
                yield Damage("error", "capture.record-too-long",
                             f"record {self.blocks} claims {caplen} bytes, more than the "
                             f"{MAX_RECORD} a capture record may hold; the file is damaged "
                             "here and the rest of it is ignored", record=True, fatal=True)
                return
            data = self._read(caplen)
            if len(data) < caplen:
                yield Damage("warning", "capture.truncated",
                             f"the file ends inside record {self.blocks} ({len(data)} of "
                             f"{caplen} bytes)")
            yield FileRecord(data, self.linktype, sec + frac * self.scale)

    # -- pcapng ----------------------------------------------------------------------------
    def _pcapng(self) -> Iterator[FileRecord | Damage]:
        if self._pending is not None:
            yield self._pending
            if self._pending.fatal:
                return
        while True:
            head = self._read(8)
            if not head:
                return
            self.blocks += 1
            if len(head) < 8:
                yield self._ends("the header of")
                return
            if head[:4] == PCAPNG_MAGIC:
                damage = self._section(head=head)
                if damage is not None:
                    yield damage
                    if damage.fatal:
                        return
                continue
            kind, length = struct.unpack(self.endian + "II", head)
            if length < 12 or length % 4:
                yield self._broken(f"block {self.blocks} has an impossible length ({length})")
                return
            body_len = length - 12
            packet = kind in (_EPB, _SPB, _PB)
            held = (kind == _IDB or packet) and body_len <= MAX_BLOCK
            if not held:
                got = self._skip(body_len)
                if got < body_len:
                    yield self._ends("", lost=packet)
                    return
                if packet:
                    yield Damage("error", "capture.record-too-long",
                                 f"block {self.blocks} claims {length} bytes, more than the "
                                 f"{MAX_BLOCK} a packet block may hold; its record is skipped",
                                 record=True)
                body = b""
            else:
                body = self._read(body_len)
                if len(body) < body_len:
                    yield self._ends("", lost=packet)
                    return
            tail = self._read(4)
            if len(tail) < 4:
                yield self._ends("the end of", lost=packet and held)
                return
            if struct.unpack(self.endian + "I", tail)[0] != length:
                yield self._broken(f"the two lengths of block {self.blocks} differ")
                return
            if held:
                yield from self._block(kind, body)

    def _ends(self, where: str, lost: bool = False) -> Damage:
        where = f"{where} " if where else ""
        return Damage("warning", "capture.truncated",
                      f"the file ends inside {where}block {self.blocks}", record=lost, fatal=True)

    def _broken(self, what: str) -> Damage:
        return Damage("error", "capture.unreadable",
                      f"{what}: the file is damaged there and the rest of it is ignored",
                      fatal=True)

    def _section(self, first: bool = False, head: bytes = b"") -> Damage | None:
        """A section header block (`head`: its first 8 bytes when already read)."""
        head = head or PCAPNG_MAGIC + self._read(4)
        order = self._read(4)
        endian = BYTE_ORDER.get(order)
        if endian is None or len(head) < 8:
            if first:
                raise FormatError(f"{UNREADABLE} (its section header is unreadable)")
            return self._broken(f"section header block {self.blocks} is unreadable")
        length = struct.unpack(endian + "I", head[4:8])[0]
        rest = self._read(length - 12) if 28 <= length <= MAX_BLOCK and not length % 4 else b""
        if len(rest) != length - 12 or struct.unpack(endian + "I", rest[-4:])[0] != length:
            if first:
                raise FormatError(f"{UNREADABLE} (its section header is unreadable)")
            return self._broken(f"section header block {self.blocks} is unreadable")
        self.endian = endian
        self.interfaces = []
        return None

    def _block(self, kind: int, body: bytes) -> Iterator[FileRecord | Damage]:
        e = self.endian
        if kind == _IDB:
            if len(body) < 8:
                yield self._bad("interface description", "too short")
                return
            linktype, snaplen = struct.unpack(e + "HxxI", body[:8])
            iface = _Interface(linktype, snaplen)
            value = self._options(body[8:]).get(9)
            if value and len(value[0]) == 1:
                iface.tsresol = (2 if value[0][0] & 128 else 10) ** (value[0][0] & 127)
            self.interfaces.append(iface)
            return
        if kind == _SPB:
            if len(body) < 4:
                yield self._bad("simple packet", "too short", lost=True)
                return
            iface = self._interface(0)
            if iface is None:
                yield self._bad("simple packet", "before any interface description",
                                lost=True)
                return
            wirelen = struct.unpack(e + "I", body[:4])[0]
            caplen = min(wirelen, iface.snaplen or MAX_RECORD, len(body) - 4)
            yield FileRecord(body[4:4 + caplen], iface.linktype, None)
            return
        if len(body) < 20:
            yield self._bad("packet", "too short", lost=True)
            return
        if kind == _EPB:
            intid, high, low, caplen, _wirelen = struct.unpack(e + "5I", body[:20])
        else:
            intid, _drops, high, low, caplen, _wirelen = struct.unpack(e + "HH4I", body[:20])
        iface = self._interface(intid)
        if iface is None:
            yield self._bad("packet", f"interface {intid} is not described", lost=True)
            return
        if 20 + caplen > len(body):
            yield self._bad("packet", f"it claims {caplen} captured bytes, more than it holds",
                            lost=True)
            return
        options = self._options(body[20 + caplen + (-caplen % 4):]) if kind == _EPB else {}
        flags = options.get(2)
        direction = 0
        if flags and len(flags[0]) == 4:
            direction = struct.unpack(e + "I", flags[0])[0] & 3
        yield FileRecord(body[20:20 + caplen], iface.linktype,
                         ((high << 32) | low) / iface.tsresol, direction, options.get(1, []))

    def _interface(self, intid: int) -> _Interface | None:
        return self.interfaces[intid] if intid < len(self.interfaces) else None

    def _bad(self, what: str, why: str, lost: bool = False) -> Damage:
        return Damage("warning", "capture.bad-block",
                      f"{what} block {self.blocks} is malformed ({why}); it is skipped",
                      record=lost)

    def _options(self, raw: bytes) -> dict[int, list[bytes]]:
        """The options of a block, each code with its values in order (to the end-of-options
        option or the end of the block)."""
        out: dict[int, list[bytes]] = {}
        pos, end = 0, min(len(raw), MAX_OPTIONS)
        while end - pos >= 4:
            code, length = struct.unpack_from(self.endian + "HH", raw, pos)
            if code == 0:
                break
            if pos + 4 + length <= end:
                out.setdefault(code, []).append(raw[pos + 4:pos + 4 + length])
            pos += 4 + length + (-length % 4)
        return out
