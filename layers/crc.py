"""CRC-16/X.25 (HDLC HCS and FCS, IEC 62056-46): reflected poly 0x8408, init and xorout 0xFFFF.

Computed in C by `binascii.crc_hqx` (the same polynomial, not reflected) over the bit-reversed
bytes: a frame's check costs microseconds, so scanning noise for frames stays fast.
"""

from __future__ import annotations

from binascii import crc_hqx


def _reverse(value: int, bits: int) -> int:
    out = 0
    for _ in range(bits):
        out = out << 1 | value & 1
        value >>= 1
    return out


_REVERSED_BYTES = bytes(_reverse(b, 8) for b in range(256))
_REVERSED_LOW = tuple(_reverse(b, 8) << 8 for b in range(256))
_REVERSED_HIGH = tuple(_reverse(b, 8) for b in range(256))


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/X.25 of `data` (check value for b"123456789" is 0x906E); sent LSB first."""
    crc = crc_hqx(bytes(data).translate(_REVERSED_BYTES), 0xFFFF)
    return (_REVERSED_LOW[crc & 0xFF] | _REVERSED_HIGH[crc >> 8]) ^ 0xFFFF


def crc16_bitwise(data: bytes | bytearray) -> int:
    """The same CRC computed bit by bit from its definition (reference for tests)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF
