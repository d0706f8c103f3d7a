"""`dlms-dissect`: decode pasted hex, read captures, sniff live, check keystores (tshark-like)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TextIO

from dissector.cli.options import Parser, UsageError, version


def commands() -> dict[str, Callable[[argparse.Namespace, TextIO], int]]:
    """Each command's `run`. The commands are imported here, not with this module: importing
    `dissector.cli` loads none of them (the extcap launcher imports `dissector.cli.extcap`
    alone, at every start of Wireshark)."""
    from dissector.cli import decode, fields, keys, read, sniff, wireshark

    return {"decode": decode.run, "read": read.run, "keys": keys.run, "sniff": sniff.run,
            "extcap": sniff.run, "fields": fields.run, "wireshark": wireshark.run}


EXAMPLES = """examples:
  dlms-dissect read pcaps/seed-case.pcap --keys pcaps/seed-case.keys.toml
  dlms-dissect decode 7EA0106103527CE2E6E7000E060006DD487E
  dlms-dissect sniff serial /dev/ttyUSB0 --baud 9600 -w line.pcapng
  dlms-dissect wireshark --install
  dlms-dissect fields
  dlms-dissect COMMAND --help        (each command's options and examples)
"""


def build_parser() -> argparse.ArgumentParser:
    from dissector.cli import decode, fields, keys, read, sniff, wireshark

    parser = Parser(prog="dlms-dissect", description="DLMS/COSEM dissector with decryption",
                    epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    decode.add_parser(sub)
    read.add_parser(sub)
    sniff.add_parsers(sub)
    keys.add_parser(sub)
    fields.add_parser(sub)
    wireshark.add_parser(sub)
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    from dissector.sources.capture import CaptureError
    from keys.keystore import KeystoreError

    run = commands()
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        return run[args.command](args, out)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    except (UsageError, KeystoreError, CaptureError, ValueError, OSError) as exc:
        sys.stderr.write(f"dlms-dissect: {_one_line(exc)}\n")
        return 2
    except Exception as exc:
        if os.environ.get("DLMS_DEBUG"):
            raise
        sys.stderr.write(f"dlms-dissect: internal error: {exc.__class__.__name__}: "
                         f"{_one_line(exc)} (set DLMS_DEBUG=1 for the traceback)\n")
        return 3


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__


if __name__ == "__main__":
    sys.exit(main())
