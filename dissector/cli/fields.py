"""`dlms-dissect fields`: the fields a display filter (`-Y`) can name, as `tshark -G fields`."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from dissector.output.filter import fields_text


def add_parser(sub: Any) -> None:
    sub.add_parser("fields", help="list the fields -Y filters can name (path, type, meaning)",
                   epilog="""examples:
  dlms-dissect fields
  dlms-dissect fields | grep security
""", formatter_class=argparse.RawDescriptionHelpFormatter)


def run(args: argparse.Namespace, out: TextIO) -> int:
    out.write(fields_text())
    return 0
