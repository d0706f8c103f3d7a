"""Scapy layers for DLMS/COSEM: HDLC, the IEC 62056-47 wrapper, xDLMS/ACSE APDUs and A-XDR data.

Pure packet definitions: no I/O, no keys, no session state.

    >>> from layers import HDLC, APDU, Wrapper
"""

from .apdu import APDU, APDU_CLASSES, TAG_NAMES
from .axdr import Data
from .hdlc import HDLC, LLC
from .serial_line import SerialLine
from .wrapper import Wrapper

__all__ = ["APDU", "APDU_CLASSES", "HDLC", "LLC", "TAG_NAMES", "Data", "SerialLine", "Wrapper"]
