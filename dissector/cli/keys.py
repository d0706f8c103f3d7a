"""`dlms-dissect keys check`: validate a keystore file."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from keys.keystore import check_keystore


def add_parser(sub: Any) -> None:
    keys = sub.add_parser("keys", help="keystore tools")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    chk = ksub.add_parser("check", help="validate a keystore file", epilog="""examples:
  dlms-dissect keys check meters.toml
""", formatter_class=argparse.RawDescriptionHelpFormatter)
    chk.add_argument("file")


def run(args: argparse.Namespace, out: TextIO) -> int:
    problems = check_keystore(args.file)
    for p in problems:
        out.write(f"{p}\n")
    errors = [p for p in problems if p.severity == "error"]
    if not problems:
        out.write(f"{args.file}: OK\n")
    return 1 if errors else 0
