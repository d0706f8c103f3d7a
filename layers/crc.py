"""CRC-16/X.25 (HDLC HCS and FCS, IEC 62056-46): reflected poly 0x8408, init and xorout 0xFFFF."""

from __future__ import annotations


def _table() -> tuple[int, ...]:
    rows = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        rows.append(crc)
    return tuple(rows)


_TABLE = _table()


def crc16(data: bytes) -> int:
    """CRC-16/X.25 of `data` (check value for b"123456789" is 0x906E); sent LSB first."""
    crc = 0xFFFF
    table = _TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFF
