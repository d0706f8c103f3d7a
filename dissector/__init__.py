"""Dissection with state and I/O: sources, reassembly, association tracking, findings, output."""
