"""Framing: byte streams and datagrams -> transport PDUs (HDLC frames, wrapper PDUs, M-Bus frames,
IEC 62056-21 sign-on messages, bare APDUs)."""
