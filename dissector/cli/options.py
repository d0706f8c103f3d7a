"""What the command line and the extcap share that needs none of the dissector: the argument
parser, the serial line settings, the version. Importing `dissector.cli` (`main.py`) loads
this and no command, so the extcap answers Wireshark's queries (`--extcap-interfaces`,
`--extcap-dlts`, `--extcap-config`, at every start of Wireshark) without Scapy or the
dissector."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, NoReturn

__all__ = ["DEFAULT_BAUD", "Parser", "UsageError", "serial_line_options", "version"]

DEFAULT_BAUD = 9600


class UsageError(Exception):
    """A bad command input: one line on stderr, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but its error messages never repeat the values given (they may be keys)."""

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"unrecognized arguments: (.*)", _unrecognized, message)
        message = re.sub(r"(invalid choice|invalid \w+ value):.*",
                         r"\1 (not repeated here: arguments may hold keys)", message)
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _unrecognized(match: re.Match[str]) -> str:
    """Name the unknown options, not the values (a value may be a key)."""
    words = match.group(1).split()
    flags = [w.split("=", 1)[0] for w in words if w.startswith("-") and len(w) > 1]
    values = len(words) - len(flags)
    named = f"unrecognized option(s): {' '.join(flags)}" if flags else "unrecognized arguments"
    if values:
        named += f" ({values} other argument(s), not repeated here: arguments may hold keys)"
    return named


def serial_line_options(g: Any) -> None:
    """The line settings of a serial tap (`sniff serial` and the extcaps share them)."""
    g.add_argument("--baud", type=int, default=DEFAULT_BAUD, help="baud rate (default 9600)")
    g.add_argument("--bytesize", "--data-bits", type=int, choices=(5, 6, 7, 8), default=8,
                   help="data bits (default 8)")
    g.add_argument("--parity", type=str.upper, choices=("N", "E", "O", "M", "S"), default="N",
                   help="parity: none, even, odd, mark, space (default N)")
    g.add_argument("--stopbits", type=float, choices=(1, 1.5, 2), default=1,
                   help="stop bits (default 1)")
    g.add_argument("--gap", type=float, metavar="SECONDS",
                   help="silence that ends a record and cuts an open frame (default: 10"
                        " character times, at least 0.05 s)")
    g.add_argument("--sign-on", action="store_true",
                   help="start at 300 Bd 7E1 for IEC 62056-21 sign-on; follow the baud rate the"
                        " acknowledgement selects, and go back there after DISC")


def version() -> str:
    """The installed package's version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("dlms-dissector")
    except PackageNotFoundError:
        return "0 (not installed)"
