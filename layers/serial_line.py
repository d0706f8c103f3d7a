"""A record of a serial line (pcap link type 147, DLT_USER0, as `sniff serial -w` writes it):
an HDLC frame, a wired M-Bus frame or an IEC 62056-21 sign-on message, by its first byte.

Importing `layers` registers it for link type 147, so Scapy's `rdpcap` and `sniff` give
HDLC/LLC/APDU (or M-Bus, or sign-on) packets for such captures.
"""

from __future__ import annotations

from typing import Any

from scapy.config import conf
from scapy.fields import XByteField
from scapy.packet import Packet, Raw

from .hdlc import HDLC
from .hdlc_bytes import FLAG
from .iec62056_21 import ACK as SIGN_ON_ACK
from .iec62056_21 import ModeE
from .mbus import ACK as MBUS_ACK
from .mbus import LONG_START, SHORT_START, MBus

DLT_USER0 = 147


class SerialLine(Packet):
    """Dispatcher: `SerialLine(b)` returns the packet class its first byte names (Raw for
    anything else)."""

    name = "serial line"
    fields_desc = [XByteField("start", FLAG)]

    @classmethod
    def dispatch_hook(cls, _pkt: bytes | None = None, *args: Any, **kargs: Any) -> type[Packet]:
        first = _pkt[0] if _pkt else FLAG
        if first == FLAG:
            return HDLC
        if first in (LONG_START, SHORT_START, MBUS_ACK):
            return MBus.dispatch_hook(_pkt, *args, **kargs)
        if first in (ord("/"), SIGN_ON_ACK):
            return ModeE.dispatch_hook(_pkt, *args, **kargs)
        return Raw


conf.l2types.register(DLT_USER0, SerialLine)
