"""`dlms-dissect`: the command line, one module per command."""

from dissector.cli.main import main

__all__ = ["main"]
