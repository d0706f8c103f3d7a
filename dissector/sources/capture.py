"""Capture files -> records: pcap and pcapng (optionally gzipped) streamed record by record,
several files read as one; each record's frame goes through `frames.FrameDecoder`."""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterator, Sequence
from typing import BinaryIO

from dissector.sources.frames import FrameDecoder
from dissector.sources.pcapfile import STREAM_ERRORS, CaptureFile, Damage, FormatError
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


class CaptureError(Exception):
    """The file cannot be read as a capture; the message is one line, fit for the CLI."""


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


def _open_all(path: CaptureSource | Sequence[CaptureSource]
              ) -> list[tuple[CaptureFile, str]]:
    """Readers on every file (all opened, or none: the first failure closes the others)."""
    paths = list(path) if isinstance(path, list | tuple) else [path]
    if not paths:
        raise CaptureError("no capture file given")
    if sum(p == "-" for p in paths) > 1:
        raise CaptureError("standard input (-) can be read only once")
    readers: list[tuple[CaptureFile, str]] = []
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
    nothing (standard input, `-`, is not opened: it can be read only once)."""
    paths = [p for p in (path if isinstance(path, list | tuple) else [path]) if p != "-"]
    if paths:
        for reader, _ in _open_all(paths):
            reader.close()


def _open(path: CaptureSource) -> tuple[CaptureFile, str]:
    """A reader on one file and the file's label; `CaptureError` if unusable."""
    if path == "-":
        handle, label = sys.stdin.buffer, "standard input"
    elif isinstance(path, str | os.PathLike):
        label = os.fspath(path)
        try:
            handle = open(label, "rb")  # closed with the reader
        except OSError as exc:
            raise CaptureError(f"{label}: {exc.strerror or exc}") from None
    else:
        handle = path
        label = str(getattr(path, "name", "capture"))
    try:
        return CaptureFile(handle), label
    except FormatError as exc:
        handle.close()
        raise CaptureError(f"{label}: {exc}") from None
    except STREAM_ERRORS as exc:
        handle.close()
        raise CaptureError(f"{label}: not a readable pcap or pcapng file ({exc})") from None


def _records(readers: list[tuple[CaptureFile, str]], ports: dict[int, str], count: int | None
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


def _file_records(reader: CaptureFile, label: str, decoder: FrameDecoder, frame_no: int,
                  count: int | None = None) -> Generator[Record | LinkEvent | Finding, None, int]:
    """The records of one file, frames numbered on from `frame_no` (up to `count`); returns
    the last number. What is wrong with the file is a `capture.*` finding where it is wrong."""
    time = 0.0
    for item in reader.records():
        if count is not None and frame_no >= count:
            break
        if isinstance(item, Damage):
            yield note(frame_no + 1, time, "", item.severity, item.code,
                       f"{label}: {item.message}")
            frame_no += item.record
            continue
        frame_no += 1
        if item.time is not None:
            time = item.time
        direction = PCAPNG_DIRECTIONS.get(item.direction, UNKNOWN)
        comments = item.comments
        comment = "; ".join(c.decode("utf-8", "replace") for c in comments) or None \
            if comments else None
        yield from decoder.frame(frame_no, time, item.linktype, item.data, direction, comment)
    return frame_no
