"""Capture files -> records: pcap and pcapng (optionally gzipped) streamed record by record,
several files read as one; each record's frame goes through `frames.FrameDecoder`."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator, Sequence
from typing import Any, BinaryIO

from scapy.error import Scapy_Exception
from scapy.utils import RawPcapNgReader, RawPcapReader

from dissector.sources.frames import FrameDecoder
from dissector.stages import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    UNKNOWN,
    Direction,
    Finding,
    LinkEvent,
    Record,
    note,
)

#: pcapng EPB direction flag -> direction on a serial link (the capture is taken at the client).
PCAPNG_DIRECTIONS: dict[int, Direction] = {1: SERVER_TO_CLIENT, 2: CLIENT_TO_SERVER}
MAX_RECORD = 65535  # Scapy's read limit per record


class CaptureError(Exception):
    """The file cannot be read as a capture; the message is one line, fit for the CLI."""


PCAP_MAGICS = frozenset({
    b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
    b"\x0a\x0d\x0d\x0a",
})
GZIP_MAGIC = b"\x1f\x8b"


CaptureSource = str | os.PathLike[str] | BinaryIO


def read_capture(
    path: CaptureSource | Sequence[CaptureSource], ports: dict[int, str] | None = None,
    count: int | None = None,
) -> Iterator[Record | LinkEvent | Finding]:
    """Stream the DLMS records of a pcap or pcapng file (optionally gzipped), in capture order.

    `path` is a file name or a binary file object, or a list of them: several files are read
    one after the other as one capture (as `mergecap -a` would join them: frame numbers go on,
    and a TCP stream or an association that a ring-buffer file cut goes on in the next file).
    `ports` maps extra DLMS port numbers to the transport they carry ("hdlc", "wrapper" or
    "raw"). Opening errors raise `CaptureError` at once, for every file before any is read;
    records are produced lazily, one capture record at a time, so memory does not grow with
    the files. With `count`, only the first `count` capture records are read (`tshark -c`).
    """
    return _records(_open_all(path), ports or {}, count)


def _open_all(path: CaptureSource | Sequence[CaptureSource]) -> list[tuple[Any, str]]:
    """Readers on every file (all opened, or none: the first failure closes the others)."""
    paths = list(path) if isinstance(path, list | tuple) else [path]
    if not paths:
        raise CaptureError("no capture file given")
    readers: list[tuple[Any, str]] = []
    try:
        for one in paths:
            readers.append(_open(one))
    except CaptureError:
        for reader, _ in readers:
            reader.close()
        raise
    return readers


def check_capture(path: CaptureSource | Sequence[CaptureSource]) -> None:
    """Raise `CaptureError` as `read_capture` would for a file that cannot be opened; read
    nothing."""
    for reader, _ in _open_all(path):
        reader.close()


def _open(path: CaptureSource) -> tuple[Any, str]:
    """A raw pcap/pcapng reader on one file and the file's label; `CaptureError` if unusable."""
    if isinstance(path, str | os.PathLike):
        label = os.fspath(path)
        try:
            handle: BinaryIO = open(label, "rb")  # closed with the reader
        except OSError as exc:
            raise CaptureError(f"{label}: {exc.strerror or exc}") from None
        magic = handle.read(4)
        handle.seek(0)
        problem = None
        if not magic:
            problem = "empty file, not a capture"
        elif magic not in PCAP_MAGICS and magic[:2] != GZIP_MAGIC:
            problem = "not a pcap or pcapng capture file"
        if problem:
            handle.close()
            raise CaptureError(f"{label}: {problem}")
    else:
        handle = path
        label = str(getattr(path, "name", "capture"))
    try:
        return RawPcapReader(handle), label
    except (Scapy_Exception, EOFError, OSError) as exc:
        handle.close()
        raise CaptureError(f"{label}: not a readable pcap or pcapng file ({exc})") from None


def _records(readers: list[tuple[Any, str]], ports: dict[int, str], count: int | None
             ) -> Iterator[Record | LinkEvent | Finding]:
    decoder = FrameDecoder(ports)
    frame_no = 0
    try:
        for reader, label in readers:
            if count is not None and frame_no >= count:
                break
            frame_no = yield from _file_records(reader, label, decoder, frame_no, count)
        yield from decoder.finish()
    finally:
        for reader, _ in readers:
            reader.close()


def _file_records(reader: Any, label: str, decoder: FrameDecoder, frame_no: int,
                  count: int | None = None) -> Generator[Record | LinkEvent | Finding, None, int]:
    """The records of one file, frames numbered on from `frame_no` (up to `count`); returns
    the last number."""
    pcapng = isinstance(reader, RawPcapNgReader)
    scale = 1e-9 if getattr(reader, "nano", False) else 1e-6
    linktype = getattr(reader, "linktype", None)
    time = 0.0
    packets = iter(reader)
    while count is None or frame_no < count:
        try:
            data, meta = next(packets)
        except StopIteration:
            break
        except Scapy_Exception as exc:
            yield note(frame_no + 1, time, "", "error", "capture.unreadable",
                       f"{label}: capture record {frame_no + 1} is unreadable ({exc}); "
                       "the rest of the file is ignored")
            break
        frame_no += 1
        direction: Direction = UNKNOWN
        comment = None
        if pcapng:
            linktype = meta.linktype
            if meta.tshigh is not None:
                time = ((meta.tshigh << 32) | meta.tslow) / meta.tsresol
            direction = PCAPNG_DIRECTIONS.get(meta.direction or 0, UNKNOWN)
            if meta.comments:
                comment = "; ".join(c.decode("utf-8", "replace") for c in meta.comments)
        else:
            time = meta.sec + meta.usec * scale
            if len(data) < meta.caplen <= MAX_RECORD:
                yield note(frame_no, time, "", "warning", "capture.truncated",
                           f"{label}: the file ends inside capture record {frame_no} "
                           f"({len(data)} of {meta.caplen} bytes)")
        yield from decoder.frame(frame_no, time, linktype, data, direction, comment)
    return frame_no


