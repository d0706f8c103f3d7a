"""Scapy layers for DLMS/COSEM: HDLC, the IEC 62056-47 wrapper, xDLMS/ACSE APDUs and A-XDR data.

Pure packet definitions: no I/O, no keys, no session state.
"""
