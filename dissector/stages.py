"""The stage types of the pipeline, in data-flow order.

    source --Record--> framing --Pdu--> analysis --ApduRecord--> output
              LinkEvent, Finding pass along every stage

A `Record` is the bytes one capture frame carried on one link and direction; a `Pdu` one
complete transport PDU cut from them; a `LinkEvent` a link that opened or closed; a
`layers.expert.Finding` (with its location) a diagnostic about the input. The analysis turns
PDUs into `dissector.analysis.record.ApduRecord`s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from layers.expert import Finding, Severity

__all__ = [
    "CLIENT_TO_SERVER",
    "SERIAL_LINK",
    "SERVER_TO_CLIENT",
    "UNKNOWN",
    "Direction",
    "Finding",
    "Item",
    "LinkEvent",
    "Pdu",
    "Record",
    "Transport",
    "endpoint",
    "note",
    "reverse",
]

Direction = Literal["client->server", "server->client", "unknown"]
#: The framings a PDU can have: an HDLC frame (flag to flag), a wrapper PDU (header + APDU), a
#: bare APDU, an M-Bus frame, an IEC 62056-21 sign-on message.
Transport = Literal["hdlc", "wrapper", "raw", "mbus", "mode-e"]

#: The link of a serial line (link type 147 records, `sniff serial`).
SERIAL_LINK = "serial 1"

CLIENT_TO_SERVER: Direction = "client->server"
SERVER_TO_CLIENT: Direction = "server->client"
UNKNOWN: Direction = "unknown"


def endpoint(ip: str, port: int) -> str:
    """An endpoint in a link id: `10.0.0.1:4059`, `[2001:db8::1]:4059`."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def reverse(direction: str) -> Direction:
    """The other direction (unknown stays unknown)."""
    if direction == CLIENT_TO_SERVER:
        return SERVER_TO_CLIENT
    if direction == SERVER_TO_CLIENT:
        return CLIENT_TO_SERVER
    return UNKNOWN


@dataclass(slots=True)
class Record:
    """Bytes of one link and direction, carried by one capture frame.

    For TCP the bytes are in-order stream data (reassembled); for UDP one datagram payload
    (`datagram` is true: PDUs never continue into the next record); for a serial line
    (link type 147) whatever the record held: a frame, part of one, or several.
    `transport_hint` is "hdlc", "wrapper", "raw", "mbus" or "serial" (a serial line: sign-on
    messages, then HDLC or M-Bus) when a port override or the source says so.
    """

    frame_no: int
    time: float
    link: str
    direction: Direction
    data: bytes
    transport_hint: str | None = None
    datagram: bool = False
    comment: str | None = None


@dataclass(slots=True)
class LinkEvent:
    """A link opened (TCP SYN) or closed (TCP FIN from both sides, RST)."""

    frame_no: int
    time: float
    link: str
    kind: Literal["open", "close"]


@dataclass(slots=True)
class Pdu:
    """One complete transport PDU and the capture frames that carried its bytes.

    `data` is an HDLC frame (flag to flag inclusive), a wrapper PDU (header + APDU), a bare
    APDU (an IEC 61334-4-32 LLC header removed), an M-Bus frame or an IEC 62056-21 sign-on
    message. `findings` are diagnostics that ride on it into its record.
    """

    data: bytes
    transport: Transport
    frames: list[int]
    time: float = 0.0
    link: str = "input"
    direction: Direction = UNKNOWN
    findings: list[Finding] = field(default_factory=list)
    comment: str | None = None

    def __reduce__(self) -> tuple[type[Pdu], tuple[Any, ...]]:
        # pickled as its fields in order (`read --jobs` sends every PDU to a worker): a
        # quarter of the cost of pickling a slotted dataclass's state
        return Pdu, (self.data, self.transport, self.frames, self.time, self.link,
                     self.direction, self.findings, self.comment)


#: What a stage yields.
Item = Record | Pdu | LinkEvent | Finding


def note(frame: int, time: float, link: str, severity: Severity, code: str, message: str,
         direction: str = UNKNOWN) -> Finding:
    """A finding about the input itself (a gap, skipped bytes, an unreadable record), located
    at capture frame `frame` on `link` ("" for the capture as a whole)."""
    return Finding(severity, code, message, frame, time, link, direction)
