"""What capture sources produce: byte records, link open/close events and notes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["client->server", "server->client", "unknown"]
Severity = Literal["error", "warning", "note"]

CLIENT_TO_SERVER: Direction = "client->server"
SERVER_TO_CLIENT: Direction = "server->client"
UNKNOWN: Direction = "unknown"


def endpoint(ip: str, port: int) -> str:
    """An endpoint in a link id: `10.0.0.1:4059`, `[2001:db8::1]:4059`."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass(slots=True)
class Record:
    """Bytes of one link and direction, carried by one capture frame.

    For TCP the bytes are in-order stream data (reassembled); for UDP one datagram payload
    (`datagram` is true: PDUs never continue into the next record); for a serial line
    (link type 147) whatever the record held: a frame, part of one, or several.
    `transport_hint` is "hdlc", "wrapper" or "raw" when a port override or the source says so.
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
class Note:
    """A finding about the capture itself (gaps, skipped bytes, fragments), not about an APDU.

    `code` is stable and dotted (`tcp.gap`, `hdlc.skipped-bytes`); `severity` as in expert
    findings; `link` is "" when the note is about the capture file as a whole; `direction`
    names the stream a gap or skip belongs to.
    """

    frame_no: int
    time: float
    link: str
    severity: Severity
    code: str
    message: str
    direction: Direction = UNKNOWN
