"""IEC 62056-21 sign-on messages that open protocol mode E (HDLC over the optical port):

- request ``/?<device address>!\\r\\n`` (the address is optional);
- identification ``/XXXZ[\\W]<ident>\\r\\n``: manufacturer (3 letters, a lower-case third one
  meaning a 20 ms minimum reaction time), baud rate character Z, an optional enhanced
  capability escape ``\\W`` (``\\2``: binary mode, i.e. HDLC, available: mode E) and the
  identification (at most 16 characters);
- acknowledgement / option select ``<ACK>VZY\\r\\n``: V protocol control (``0`` normal,
  ``1`` secondary, ``2`` HDLC), Z baud rate, Y mode control (``0`` data readout,
  ``1`` programming, ``2`` binary mode (HDLC)).

After an acknowledgement with V = Y = ``2`` both ends switch to HDLC at the baud rate Z names.
`ModeE(b)` dispatches on the first bytes; every class has `kind` ("sign-on", "identification",
"acknowledge") and a `describe_*` helper gives the message in words.
"""

from __future__ import annotations

from typing import Any, ClassVar

from scapy.fields import Field, StrFixedLenField, XByteField
from scapy.packet import Packet

from .expert import add_finding
from .packet import DLMSPacket

CRLF = b"\r\n"
ACK = 0x06
MAX_IDENT = 16
#: Identifications longer than the standard's 16 characters are accepted up to this length.
LONG_IDENT = 48
MAX_ADDRESS = 32

#: Baud rate characters of protocol modes C and E, and of mode B.
BAUD_MODE_C_E = {"0": 300, "1": 600, "2": 1200, "3": 2400, "4": 4800, "5": 9600, "6": 19200}
BAUD_MODE_B = {"A": 600, "B": 1200, "C": 2400, "D": 4800, "E": 9600, "F": 19200}
PROTOCOL_CONTROL = {"0": "normal protocol procedure", "1": "secondary protocol procedure",
                    "2": "HDLC protocol procedure"}
MODE_CONTROL = {"0": "data readout", "1": "programming mode", "2": "binary mode (HDLC)"}
ENHANCED_CAPABILITY = {"2": "binary mode (HDLC) available: protocol mode E"}


def baud_rate(char: str) -> int | None:
    """Baud rate a baud rate character names (modes C/E digits, mode B letters), else None."""
    return BAUD_MODE_C_E.get(char) or BAUD_MODE_B.get(char)


def _text(x: Any) -> str:
    if isinstance(x, bytes):
        return x.decode("latin-1")
    return "" if x is None else str(x)


class TextField(StrFixedLenField):
    """ASCII characters of a fixed count, shown as text; a short input fails the field."""

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, bytes]:
        n = self.length_from(pkt)
        if len(s) < n:
            raise ValueError(f"{n} character(s) needed, {len(s)} present")
        return s[n:], s[:n]

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        return repr(_text(x))


class CharField(TextField):
    """One ASCII character, shown with its meaning from `names`."""

    __slots__ = ["names"]

    def __init__(self, name: str, default: bytes, names: dict[str, str] | None = None) -> None:
        super().__init__(name, default, length=1)
        self.names = names or {}

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        c = _text(x)
        meaning = self.names.get(c)
        return f"{c!r} ({meaning})" if meaning else repr(c)


class BaudCharField(CharField):
    """The baud rate character Z, shown with the rate it names."""

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        rate = baud_rate(_text(x))
        return f"{_text(x)!r} ({rate} Bd)" if rate else f"{_text(x)!r} (no rate)"


class TextUntilField(Field[bytes, bytes]):
    """Text up to (not including) a terminator that the next field holds; at most `limit`
    bytes. A missing terminator fails the field (a `malformed.field` finding)."""

    __slots__ = ["limit", "stop"]

    def __init__(self, name: str, default: bytes, stop: bytes, limit: int) -> None:
        super().__init__(name, default)
        self.stop = stop
        self.limit = limit

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, bytes]:
        end = s.find(self.stop, 0, self.limit + len(self.stop))
        if end < 0:
            raise ValueError(f"no {self.stop!r} within {self.limit} characters")
        return s[end:], s[:end]

    def addfield(self, pkt: Packet, s: bytes, val: bytes | None) -> bytes:
        return s + (val or b"")

    def i2len(self, pkt: Packet, x: bytes | None) -> int:
        return len(x or b"")

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        return repr(_text(x))


class EscapeField(Field[bytes, bytes]):
    """The optional enhanced capability escape ``\\W`` (two bytes, or nothing)."""

    def __init__(self, name: str, default: bytes) -> None:
        super().__init__(name, default)

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, bytes]:
        if s[:1] == b"\\":
            if len(s) < 2:
                raise ValueError("escape character without its capability character")
            return s[2:], s[:2]
        return s, b""

    def addfield(self, pkt: Packet, s: bytes, val: bytes | None) -> bytes:
        return s + (val or b"")

    def i2len(self, pkt: Packet, x: bytes | None) -> int:
        return len(x or b"")

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        esc = _text(x)
        if not esc:
            return "(none)"
        return f"{esc!r} ({ENHANCED_CAPABILITY.get(esc[1:], 'reserved')})"


class _ModeEMessage(DLMSPacket):
    """Common behaviour: the message ends at CR LF; what follows is padding."""

    kind: ClassVar[str] = "text"

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s

    def post_dissect(self, s: bytes) -> bytes:
        if "end" in self.fields and self.fields["end"][-2:] != CRLF:
            add_finding(self, "error", "mode-e.bad-end",
                        f"message ends with {self.fields['end']!r}, expected CR LF")
        self.check()
        return s

    def check(self) -> None:
        """Message-specific findings after dissection."""


class ModeERequest(_ModeEMessage):
    """Request (sign-on) ``/?<address>!\\r\\n``."""

    name = "IEC 62056-21 request"
    kind = "sign-on"
    fields_desc = [
        TextField("start", b"/?", length=2),
        TextUntilField("address", b"", stop=b"!", limit=MAX_ADDRESS),
        TextField("end", b"!\r\n", length=3),
    ]

    def check(self) -> None:
        if self.fields.get("start", b"/?") != b"/?":
            add_finding(self, "error", "mode-e.bad-start",
                        f"request starts with {self.fields['start']!r}, expected '/?'")

    def mysummary(self) -> str:
        return describe_request(self)


class ModeEIdentification(_ModeEMessage):
    """Identification ``/XXXZ[\\W]<ident>\\r\\n`` sent by the meter."""

    name = "IEC 62056-21 identification"
    kind = "identification"
    fields_desc = [
        TextField("start", b"/", length=1),
        TextField("manufacturer", b"XXX", length=3),
        BaudCharField("baud", b"5"),
        EscapeField("enhanced", b"\\2"),
        TextUntilField("identification", b"", stop=CRLF, limit=LONG_IDENT),
        TextField("end", CRLF, length=2),
    ]

    def check(self) -> None:
        f = self.fields
        if "manufacturer" in f and not _text(f["manufacturer"]).isalpha():
            add_finding(self, "warning", "mode-e.bad-manufacturer",
                        f"manufacturer {_text(f['manufacturer'])!r} is not three letters")
        if "baud" in f and baud_rate(_text(f["baud"])) is None:
            add_finding(self, "note", "mode-e.baud",
                        f"baud rate character {_text(f['baud'])!r} names no rate (mode A)")
        if len(f.get("identification", b"")) > MAX_IDENT:
            add_finding(self, "warning", "mode-e.long-identification",
                        f"identification of {len(f['identification'])} characters, at most"
                        f" {MAX_IDENT} allowed")

    @property
    def mode_e(self) -> bool:
        """Whether the meter announces binary mode (HDLC), i.e. protocol mode E."""
        return self.enhanced == b"\\2"

    def mysummary(self) -> str:
        return describe_identification(self)


class ModeEAck(_ModeEMessage):
    """Acknowledgement / option select ``<ACK>VZY\\r\\n`` sent by the client."""

    name = "IEC 62056-21 acknowledgement"
    kind = "acknowledge"
    fields_desc = [
        XByteField("ack", ACK),
        CharField("protocol", b"2", PROTOCOL_CONTROL),
        BaudCharField("baud", b"5"),
        CharField("mode", b"2", MODE_CONTROL),
        TextField("end", CRLF, length=2),
    ]

    def check(self) -> None:
        f = self.fields
        if "baud" in f and _text(f["baud"]) not in BAUD_MODE_C_E:
            add_finding(self, "warning", "mode-e.baud",
                        f"baud rate character {_text(f['baud'])!r} is not one of 0..6")

    @property
    def hdlc(self) -> bool:
        """Whether the client selects the HDLC protocol (protocol mode E)."""
        return self.protocol == b"2" and self.mode == b"2"

    def mysummary(self) -> str:
        return describe_ack(self)


class ModeEUnknown(_ModeEMessage):
    """Text that is none of the three sign-on messages: kept as it is."""

    name = "IEC 62056-21 message (unknown)"
    kind = "unknown"
    fields_desc = [TextUntilField("text", b"", stop=CRLF, limit=256),
                   TextField("end", CRLF, length=2)]

    def check(self) -> None:
        add_finding(self, "warning", "mode-e.unknown",
                    "not a request, identification or acknowledgement")

    def mysummary(self) -> str:
        return describe_mode_e(self)


class ModeE(Packet):
    """Dispatcher: `ModeE(b)` returns the message class the first bytes name."""

    name = "IEC 62056-21"
    fields_desc = [XByteField("start", 0x2F)]

    @classmethod
    def dispatch_hook(cls, _pkt: bytes | None = None, *args: Any, **kargs: Any) -> type[Packet]:
        if not _pkt:
            return ModeERequest
        if _pkt[:2] == b"/?":
            return ModeERequest
        if _pkt[:1] == b"/":
            return ModeEIdentification
        if _pkt[0] == ACK:
            return ModeEAck
        return ModeEUnknown


def describe_request(pkt: Packet) -> str:
    """`sign-on request (any device)` or `sign-on request to device '12345678'`."""
    address = _text(pkt.fields.get("address", b""))
    return f"sign-on request to device {address!r}" if address else \
        "sign-on request (any device)"


def describe_identification(pkt: Packet) -> str:
    """E.g. `identification LGZ 'ZMD3104107.B32', 9600 Bd, mode E (HDLC)`."""
    manufacturer = _text(pkt.fields.get("manufacturer", b"???"))
    rate = baud_rate(_text(pkt.fields.get("baud", b"")))
    words = [f"identification {manufacturer} "
             f"{_text(pkt.fields.get('identification', b''))!r}",
             f"{rate} Bd" if rate else "no baud rate switch"]
    if pkt.fields.get("enhanced") == b"\\2":
        words.append("mode E (HDLC)")
    if manufacturer[2:3].islower():
        words.append("20 ms reaction time")
    return ", ".join(words)


def describe_ack(pkt: Packet) -> str:
    """E.g. `acknowledge: HDLC protocol procedure, 9600 Bd, binary mode (HDLC)`."""
    protocol = _text(pkt.fields.get("protocol", b""))
    mode = _text(pkt.fields.get("mode", b""))
    rate = baud_rate(_text(pkt.fields.get("baud", b"")))
    return (f"acknowledge: {PROTOCOL_CONTROL.get(protocol, f'protocol {protocol!r}')}, "
            f"{f'{rate} Bd' if rate else 'unknown rate'}, "
            f"{MODE_CONTROL.get(mode, f'mode {mode!r}')}")


def describe_mode_e(pkt: Packet) -> str:
    """Any sign-on message in words."""
    if isinstance(pkt, ModeERequest):
        return describe_request(pkt)
    if isinstance(pkt, ModeEIdentification):
        return describe_identification(pkt)
    if isinstance(pkt, ModeEAck):
        return describe_ack(pkt)
    return f"IEC 62056-21 text {_text(pkt.fields.get('text', b''))!r}"


def message_length(data: bytes, pos: int = 0) -> int | None:
    """Length of the sign-on message starting at `data[pos]` (through CR LF); 0 if more bytes
    are needed; None if the bytes there start no request, identification or acknowledgement."""
    rest = data[pos:]
    if not rest:
        return 0
    if rest[0] == ACK:
        if len(rest) < 6:
            return 0 if _ack_prefix_ok(rest) else None
        return 6 if _ack_prefix_ok(rest[:6]) else None
    if rest[0] != 0x2F:
        return None
    limit = 2 + MAX_ADDRESS + 3 if rest[1:2] == b"?" else 5 + 2 + LONG_IDENT + 2
    end = rest.find(CRLF, 0, limit)
    if end < 0:
        head = rest[:-1] if rest.endswith(b"\r") else rest
        return 0 if len(rest) < limit and _printable(head) else None
    body = rest[:end]
    if not _printable(body):
        return None
    if body[1:2] == b"?":
        return end + 2 if body.endswith(b"!") else None
    return end + 2 if len(body) >= 5 and body[1:4].isalpha() else None


def _printable(b: bytes) -> bool:
    return all(0x20 <= c < 0x7F for c in b)


def _ack_prefix_ok(b: bytes) -> bool:
    want = (lambda c: c == ACK, lambda c: 0x30 <= c <= 0x39, lambda c: 0x20 < c < 0x7F,
            lambda c: 0x20 < c < 0x7F, lambda c: c == 0x0D, lambda c: c == 0x0A)
    return all(ok(c) for ok, c in zip(want, b, strict=False)) and (
        len(b) < 2 or chr(b[1]) in PROTOCOL_CONTROL)


def looks_like_mode_e(data: bytes) -> bool:
    """Whether the bytes start with an IEC 62056-21 request, identification or
    acknowledgement (complete, or cut short but consistent so far)."""
    n = message_length(data)
    return n is not None and (n > 0 or len(data) >= 2)


__all__ = ["ModeE", "ModeEAck", "ModeEIdentification", "ModeERequest", "ModeEUnknown",
           "baud_rate", "describe_ack", "describe_identification", "describe_mode_e",
           "describe_request", "looks_like_mode_e", "message_length"]
