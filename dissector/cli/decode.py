"""`dlms-dissect decode`: frames or APDUs pasted from a trace, one per argument or line."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from dissector.cli.common import emit, key_options, load_keys, output_options, renderer


def add_parser(sub: Any) -> None:
    dec = sub.add_parser("decode", help="decode hex frames or APDUs (arguments or stdin)",
                         epilog="""examples:
  dlms-dissect decode 7EA0106103527CE2E6E7000E060006DD487E
  dlms-dissect decode C8 1E 30 01234567 ... --ek 000102030405060708090A0B0C0D0E0F --ak ...
  xclip -o | dlms-dissect decode --json      (one frame or APDU a line on stdin)
""", formatter_class=argparse.RawDescriptionHelpFormatter)
    dec.add_argument("hex", nargs="*", help="one frame or APDU per argument")
    output_options(dec)
    key_options(dec)


def run(args: argparse.Namespace, out: TextIO) -> int:
    from dissector.analysis.capture import run_serial
    from dissector.analysis.pipeline import Dissector
    from dissector.framing.lines import hex_units
    from dissector.sources.hexinput import parse_hex

    store = load_keys(args)
    lines = args.hex or [line for line in sys.stdin.read().splitlines() if line.strip()]
    data = [parse_hex(line) for line in lines]
    dis = Dissector(store)
    emit(out, args, run_serial(dis, hex_units(data), renderer(args), position=False))
    return 0
