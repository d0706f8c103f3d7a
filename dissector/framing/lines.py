"""Pasted lines -> PDUs: each line as the PDUs it holds.

A line is HDLC (frames split at their flags), a wrapper PDU, an IEC 61334-4-32 LLC header with
its APDU, a bare APDU, or bytes of a serial line (IEC 62056-21 sign-on messages, wired M-Bus
frames) that go through the serial demultiplexer, which keeps its state from line to line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from dissector.framing.hdlc import split_hdlc_frames
from dissector.framing.mbus import looks_like_mbus
from dissector.framing.serial import SerialDemux
from dissector.stages import Pdu
from layers.expert import Finding, own_findings
from layers.iec62056_21 import looks_like_mode_e
from layers.llc432 import HEADER_LEN, LLC432, looks_like_llc432


def hex_units(lines: Iterable[bytes]) -> Iterator[Pdu | Finding]:
    """The PDUs of pasted lines (numbered from 1, as their frame numbers) in order. Every line
    is accounted for: by the records of its PDUs (a frame it cuts short is one, with the
    finding its layer gives), or by a finding that names it (ride on its next PDU, or come
    after the last line)."""
    demux = SerialDemux("input")
    for n, data in enumerate(lines, 1):
        if data[:1] != b"\x7e" and (looks_like_mode_e(data) or looks_like_mbus(data)):
            items: list[Pdu | Finding] = demux.feed(data, n) + demux.end_of_line()
        elif looks_like_llc432(data):
            header = LLC432(data, stop_dissection_after=LLC432)
            items = [Pdu(data[HEADER_LEN:], "raw", [n],
                         findings=own_findings(header))]
        else:
            items = list(units_from_line(data, n))
        yield from _riding(items)
    yield from _riding(demux.flush())


def _riding(items: list[Pdu | Finding]) -> Iterator[Pdu | Finding]:
    """Findings ride on the next PDU among `items`; those after the last one are given."""
    notes: list[Finding] = []
    for item in items:
        if isinstance(item, Finding):
            where = f"line {item.frame}: " if item.frame else ""
            notes.append(Finding(item.severity, item.code, where + item.message))
        else:
            item.findings[:0] = notes
            notes = []
            yield item
    yield from notes


def units_from_line(data: bytes, line_no: int) -> list[Pdu]:
    """Split one input line: HDLC frames at their flags, a wrapper PDU, or a bare APDU."""
    if data[:1] == b"\x7e":
        frames = split_hdlc_frames(data) or [data]
        units = [Pdu(f, "hdlc", [line_no]) for f in frames]
        left = len(data) - sum(len(f) for f in frames)
        if left > 0:
            units[-1].findings.append(Finding(
                "warning", "hdlc.skipped-bytes",
                f"line {line_no}: {left} byte(s) outside any complete HDLC frame were skipped"))
        return units
    if data[:2] == b"\x00\x01" and len(data) >= 8:
        return [Pdu(data, "wrapper", [line_no])]
    return [Pdu(data, "raw", [line_no])]
