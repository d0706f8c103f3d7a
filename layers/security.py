"""Security control byte and security header fields (Green Book security_control, notes §5.1)."""

from __future__ import annotations

from scapy.fields import XByteField
from scapy.packet import Packet

SUITE_NAMES = {0: "AES-GCM-128", 1: "ECDH-ECDSA-AES-GCM-128-SHA-256",
               2: "ECDH-ECDSA-AES-GCM-256-SHA-384"}
TAG_LENGTH = 12


def sc_suite(sc: int) -> int:
    return sc & 0x0F


def sc_authenticated(sc: int) -> bool:
    return bool(sc & 0x10)


def sc_encrypted(sc: int) -> bool:
    return bool(sc & 0x20)


def sc_broadcast(sc: int) -> bool:
    return bool(sc & 0x40)


def sc_compressed(sc: int) -> bool:
    return bool(sc & 0x80)


def describe_sc(sc: int) -> str:
    """Summary-line form: `SC=30 auth+enc suite0`, `SC=70 auth+enc broadcast suite0`."""
    parts = [p for p, on in (("auth", sc_authenticated(sc)), ("enc", sc_encrypted(sc))) if on]
    words = "+".join(parts) or "no-protection"
    if sc_broadcast(sc):
        words += " broadcast"
    if sc_compressed(sc):
        words += " compressed"
    return f"SC={sc:02X} {words} suite{sc_suite(sc)}"


def explain_sc(sc: int) -> list[str]:
    """The byte bit by bit, for tree output."""
    return [
        f"bit 7 compression: {'applied' if sc_compressed(sc) else 'not applied'}",
        f"bit 6 key set: {'broadcast (GBEK)' if sc_broadcast(sc) else 'unicast'}",
        f"bit 5 encryption: {'applied' if sc_encrypted(sc) else 'not applied'}",
        f"bit 4 authentication: {'applied' if sc_authenticated(sc) else 'not applied'}",
        f"bits 3-0 security suite: {sc_suite(sc)} "
        f"({SUITE_NAMES.get(sc_suite(sc), 'reserved')})",
    ]


class SecurityControlField(XByteField):
    """The security control byte, shown with its bits in words."""

    def i2repr(self, pkt: Packet, x: int | None) -> str:
        return "None" if x is None else f"0x{x:02x} ({describe_sc(x)[6:]})"
