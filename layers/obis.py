"""OBIS logical names (IEC 62056-6-1): text form, well-known names and COSEM interface classes.

An OBIS code is six value groups A.B.C.D.E.F. `obis_name` knows a table of abstract objects
(A=0: clock, associations, security setup, communication setups, ...) and composes names of
electricity quantities (A=1) from value groups C (quantity, phase), D (processing: instantaneous,
energy, demand), E (tariff) and F (billing period).  Group B (channel) is a wildcard throughout.
"""

from __future__ import annotations

import re
from typing import Any

from scapy.fields import StrFixedLenField
from scapy.packet import Packet

#: COSEM interface class id -> name (DLMS UA Blue Book class list).
INTERFACE_CLASSES: dict[int, str] = {
    1: "data", 3: "register", 4: "extended-register", 5: "demand-register",
    6: "register-activation", 7: "profile-generic", 8: "clock", 9: "script-table",
    10: "schedule", 11: "special-days-table", 12: "association-sn", 15: "association-ln",
    17: "sap-assignment", 18: "image-transfer", 19: "iec-local-port-setup",
    20: "activity-calendar", 21: "register-monitor", 22: "single-action-schedule",
    23: "iec-hdlc-setup", 24: "iec-twisted-pair-setup", 25: "m-bus-port-setup",
    26: "utility-tables", 27: "modem-configuration", 28: "auto-answer", 29: "auto-connect",
    30: "data-protection", 40: "push-setup", 41: "tcp-udp-setup", 42: "ipv4-setup",
    43: "mac-address-setup", 44: "ppp-setup", 45: "gprs-modem-setup", 46: "smtp-setup",
    47: "gsm-diagnostic", 48: "ipv6-setup", 50: "s-fsk-phy-mac-setup",
    51: "s-fsk-active-initiator", 52: "s-fsk-mac-synchronization-timeouts",
    53: "s-fsk-mac-counters", 55: "iec-61334-4-32-llc-setup", 56: "s-fsk-reporting-system-list",
    57: "llc-type1-setup", 58: "llc-type2-setup", 59: "llc-type3-setup",
    61: "register-table", 62: "compact-data", 63: "status-mapping", 64: "security-setup",
    65: "parameter-monitor", 67: "sensor-manager", 68: "arbitrator", 70: "disconnect-control",
    71: "limiter", 72: "m-bus-client", 73: "wireless-mode-q-channel",
    74: "m-bus-master-port-setup", 76: "dlms-server-m-bus-port-setup", 77: "m-bus-diagnostic",
    80: "llc-sscs-setup", 81: "prime-plc-physical-layer-counters", 82: "prime-plc-mac-setup",
    83: "prime-plc-mac-functional-parameters", 84: "prime-plc-mac-counters",
    85: "prime-plc-mac-network-administration-data", 86: "prime-plc-application-identification",
    90: "g3-plc-mac-layer-counters", 91: "g3-plc-mac-setup", 92: "g3-plc-6lowpan-setup",
    100: "ntp-setup", 101: "zigbee-sas-startup", 102: "zigbee-sas-join",
    103: "zigbee-sas-aps-fragmentation", 104: "zigbee-network-control", 111: "account",
    112: "credit", 113: "charge", 115: "token-gateway", 116: "iec-62055-41-attributes",
    122: "function-control", 123: "array-manager", 124: "communication-port-protection",
    151: "lte-monitoring", 152: "coap-setup", 153: "coap-diagnostic",
    160: "g3-plc-hybrid-rf-mac-layer-counters", 161: "g3-plc-hybrid-rf-mac-setup",
    162: "g3-plc-hybrid-6lowpan-adaptation-layer-setup",
}

# Abstract and general-purpose objects, keyed by (A, C, D, E); B (channel) and F are wildcards.
_FIXED: dict[tuple[int, int, int, int], str] = {
    (0, 0, 1, 0): "billing period counter",
    (0, 0, 1, 2): "time stamp of the most recent billing period",
    (0, 1, 0, 0): "clock",
    (0, 2, 0, 0): "modem configuration",
    (0, 2, 1, 0): "auto connect",
    (0, 2, 2, 0): "auto answer",
    (0, 10, 0, 0): "global meter reset script table",
    (0, 10, 0, 1): "end of billing period script table",
    (0, 10, 0, 100): "tariffication script table",
    (0, 10, 0, 106): "disconnect control script table",
    (0, 10, 0, 107): "image activation script table",
    (0, 10, 0, 108): "push script table",
    (0, 11, 0, 0): "special days table",
    (0, 12, 0, 0): "schedule",
    (0, 13, 0, 0): "activity calendar",
    (0, 14, 0, 0): "register activation",
    (0, 15, 0, 0): "end of billing period single action schedule",
    (0, 15, 0, 2): "image activation single action schedule",
    (0, 17, 0, 0): "limiter",
    (0, 20, 0, 0): "IEC optical port setup",
    (0, 22, 0, 0): "IEC HDLC setup",
    (0, 23, 0, 0): "IEC twisted pair setup",
    (0, 24, 1, 0): "M-Bus client",
    (0, 24, 6, 0): "M-Bus master port setup",
    (0, 25, 0, 0): "TCP-UDP setup",
    (0, 25, 1, 0): "IPv4 setup",
    (0, 25, 2, 0): "MAC address setup",
    (0, 25, 3, 0): "PPP setup",
    (0, 25, 4, 0): "GPRS modem setup",
    (0, 25, 5, 0): "SMTP setup",
    (0, 25, 6, 0): "GSM diagnostic",
    (0, 25, 7, 0): "IPv6 setup",
    (0, 25, 10, 0): "NTP setup",
    (0, 40, 0, 0): "current association",
    (0, 41, 0, 0): "SAP assignment",
    (0, 42, 0, 0): "COSEM logical device name",
    (0, 96, 1, 0): "device ID 1 (meter serial number)",
    (0, 96, 3, 10): "disconnect control",
    (0, 96, 7, 9): "number of long power failures in any phase",
    (0, 96, 7, 21): "number of power failures in any phase",
    (0, 96, 13, 0): "consumer message text",
    (0, 96, 13, 1): "consumer message code",
    (0, 96, 14, 0): "currently active tariff",
    (0, 99, 98, 0): "standard event log",
    (1, 0, 2, 0): "active firmware identifier",
    (1, 0, 2, 8): "active firmware signature",
    (1, 0, 9, 1): "local time",
    (1, 0, 9, 2): "local date",
    (1, 98, 1, 0): "billing period data profile",
    (1, 99, 1, 0): "load profile 1",
    (1, 99, 2, 0): "load profile 2",
    (1, 99, 97, 0): "power failure event log",
}

# Instances numbered by value group E, keyed by (A, C, D); "{e}" is replaced by E.
_BY_E: dict[tuple[int, int, int], str] = {
    (0, 10, 0): "script table {e}",
    (0, 15, 0): "single action schedule {e}",
    (0, 24, 2): "M-Bus value {e}",
    (0, 25, 9): "push setup {e}",
    (0, 40, 0): "association {e}",
    (0, 43, 0): "security setup {e}",
    (0, 43, 1): "invocation counter {e}",
    (0, 44, 0): "image transfer {e}",
    (0, 96, 1): "device ID {e1}",
    (0, 97, 97): "error register {e}",
    (0, 97, 98): "alarm register {e}",
    (0, 99, 98): "event log {e}",
    (1, 0, 0): "device ID {e1}",
}

# Electricity (A=1) value group C: quantity by offset (C 1..20 all phases, +20 L1, +40 L2, +60 L3).
_QUANTITY: dict[int, tuple[str, str | None, str | None]] = {
    # offset: (name, energy symbol, power symbol); None when D=8 has no energy meaning.
    1: ("active {x} import", "+A", "+P"),
    2: ("active {x} export", "-A", "-P"),
    3: ("reactive {x} import", "+R", "+Q"),
    4: ("reactive {x} export", "-R", "-Q"),
    5: ("reactive {x} QI", None, None),
    6: ("reactive {x} QII", None, None),
    7: ("reactive {x} QIII", None, None),
    8: ("reactive {x} QIV", None, None),
    9: ("apparent {x} import", None, None),
    10: ("apparent {x} export", None, None),
    11: ("current", None, None),
    12: ("voltage", None, None),
    13: ("power factor", None, None),
    14: ("supply frequency", None, None),
    15: ("active {x} absolute", None, None),
    16: ("active {x} net (import - export)", None, None),
}
_PHASE = {0: "", 20: "L1 ", 40: "L2 ", 60: "L3 "}
_SPECIAL_C = {81: "phase angle", 91: "neutral current", 92: "neutral voltage"}
_PROCESSING = {
    2: "cumulative maximum", 3: "minimum", 4: "current average", 5: "last average",
    6: "maximum", 32: "under-limit (sag) count", 36: "over-limit (swell) count",
}


def obis_str(b: bytes) -> str:
    """`a.b.c.d.e.f` for a 6-byte OBIS code (hex for anything else)."""
    if len(b) != 6:
        return b.hex()
    return ".".join(map(str, b))


def _electricity_name(c: int, d: int, e: int) -> str | None:
    if c in _SPECIAL_C:
        base = _SPECIAL_C[c]
        return base if d == 7 and e == 0 else None
    if not 1 <= c <= 80:
        return None
    offset = 0 if c <= 20 else (c - 1) // 20 * 20
    quantity = _QUANTITY.get(c - offset)
    if quantity is None:
        return None
    template, energy_sym, power_sym = quantity
    phase = _PHASE[offset]
    energy_like = "{x}" in template
    if d == 8 and energy_like:
        name = phase + template.format(x="energy") + (f" ({energy_sym})" if energy_sym else "")
        return name + (f", tariff {e}" if e else "")
    if d == 7 and e == 0:
        if energy_like:
            return phase + template.format(x="power") + (f" ({power_sym})" if power_sym else "")
        return phase + template
    if d in _PROCESSING:
        what = phase + template.format(x="power")
        return f"{what}, {_PROCESSING[d]}" + (f", tariff {e}" if e else "")
    return None


def obis_name(b: bytes) -> str | None:
    """Well-known name of an OBIS code, or None.

    Group B (channel) is ignored; F other than 255 is named as a billing period (0..99).
    """
    if len(b) != 6:
        return None
    a, _b, c, d, e, f = b
    name = _FIXED.get((a, c, d, e))
    if name is None:
        template = _BY_E.get((a, c, d))
        if template is not None:
            name = template.format(e=e, e1=e + 1)
        elif a == 1:
            name = _electricity_name(c, d, e)
    if name is None or f == 255:
        return name
    if f <= 99:
        return f"{name}, billing period {f}"
    return f"{name}, F={f}"


_OBIS_TEXT = re.compile(r"^\s*(\d+)[-.](\d+)[:.](\d+)\.(\d+)\.(\d+)(?:[.*&](\d+))?\s*$")


def parse_obis(value: Any) -> bytes:
    """OBIS bytes from `"1.0.1.8.0.255"`, `"1-0:1.8.0.255"`, `"1-0:1.8.0"` (F=255), bytes, tuple."""
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    elif isinstance(value, str):
        m = _OBIS_TEXT.match(value)
        if m is None:
            raise ValueError(f"not an OBIS code: {value!r}")
        raw = bytes(int(g) if g is not None else 255 for g in m.groups())
    else:
        raw = bytes(value)
    if len(raw) != 6:
        raise ValueError(f"an OBIS code has 6 value groups, got {len(raw)}")
    return raw


class ObisField(StrFixedLenField):
    """A 6-byte OBIS logical name, shown `a.b.c.d.e.f (name)`; builds from text, bytes or tuple."""

    __slots__: list[str] = []

    def __init__(self, name: str, default: Any = b"\x00\x00\x00\x00\x00\x00") -> None:
        super().__init__(name, parse_obis(default) if default is not None else None, length=6)

    def any2i(self, pkt: Packet | None, x: Any) -> bytes | None:
        if x is None:
            return None
        return parse_obis(x)

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        if not isinstance(x, bytes):
            return repr(x)
        name = obis_name(x)
        text = obis_str(x)
        return f"{text} ({name})" if name else text
