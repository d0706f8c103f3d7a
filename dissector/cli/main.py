"""`dlms-dissect`: decode pasted hex, read captures, check keystores (tshark-like)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn, TextIO

from dissector.analysis.pipeline import Dissector
from dissector.analysis.record import ApduRecord
from dissector.cli.sniff import add_sniff_commands, run_sniff
from dissector.output.text import Writer
from dissector.sources.capture import CaptureError
from keys.keystore import (
    Keystore,
    KeystoreError,
    check_keystore,
    default_keystore_path,
    keystore_from_flags,
    load_keystore,
)

KEY_FLAGS = ("ek", "ak", "bek", "kek", "dk", "hls_secret", "client_title", "server_title")


class UsageError(Exception):
    """A bad command input: one line on stderr, exit status 2."""


def _key_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("keys (hex or text:...; never echoed)")
    g.add_argument("--keys", metavar="FILE", help="keystore TOML file (default: $DLMS_KEYS)")
    for flag in KEY_FLAGS:
        g.add_argument("--" + flag.replace("_", "-"), dest=flag, metavar="KEY")


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-V", dest="verbose", action="store_true", help="print the full tree")
    p.add_argument("--json", action="store_true", help="one JSON object per APDU")


class Parser(argparse.ArgumentParser):
    """argparse, but its error messages never repeat the values given (they may be keys)."""

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"(unrecognized arguments|invalid choice|invalid \w+ value):.*",
                         r"\1 (not repeated here: arguments may hold keys)", message)
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="dlms-dissect", description="DLMS/COSEM dissector with decryption")
    sub = parser.add_subparsers(dest="command", required=True)
    dec = sub.add_parser("decode", help="decode hex frames or APDUs (arguments or stdin)")
    dec.add_argument("hex", nargs="*", help="one frame or APDU per argument")
    _output_options(dec)
    _key_options(dec)
    rd = sub.add_parser("read", help="dissect capture files (pcap or pcapng)")
    rd.add_argument("capture", nargs="+",
                    help="one capture, or several read one after the other as one capture"
                         " (ring-buffer files in order)")
    _output_options(rd)
    rd.add_argument("-Y", dest="filter", metavar="FILTER",
                    help='display filter on JSON fields, e.g. \'security.key_kind == "dedicated"\'')
    rd.add_argument("-w", dest="write", metavar="OUT.pcapng",
                    help="write each deciphered APDU as wrapper-over-UDP-4059")
    rd.add_argument("--stats", action="store_true", help="per-association statistics at the end")
    rd.add_argument("--jobs", type=_positive, default=1, metavar="N",
                    help="dissect associations in N processes (output stays in capture order)")
    rd.add_argument("--port", action="append", default=[], metavar="N:wrapper|hdlc|raw|mbus",
                    help="force the transport on a TCP/UDP port (repeatable)")
    _key_options(rd)
    add_sniff_commands(sub, _key_options, _output_options)
    keys = sub.add_parser("keys", help="keystore tools")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    chk = ksub.add_parser("check", help="validate a keystore file")
    chk.add_argument("file")
    return parser


def load_keys(args: argparse.Namespace) -> Keystore:
    """Flags first, then --keys FILE (or $DLMS_KEYS)."""
    flags = {k: getattr(args, k, None) for k in KEY_FLAGS}
    store = keystore_from_flags(**flags)
    path = getattr(args, "keys", None) or default_keystore_path()
    if path:
        store = store.merged(load_keystore(path))
        for warning in store.warnings:
            sys.stderr.write(f"dlms-dissect: {warning}\n")
    return store


def _mode(args: argparse.Namespace) -> str:
    return "json" if args.json else "tree" if args.verbose else "summary"


def _renderer(args: argparse.Namespace) -> Any:
    """Record -> Rendered (text and pcap item), or None when the display filter drops it."""
    from dissector.analysis.parallel import Rendered
    from dissector.output.filter import compile_filter
    from dissector.output.pcap import pcap_item
    from dissector.output.text import render

    mode = _mode(args)
    keep = compile_filter(args.filter) if getattr(args, "filter", None) else None
    want_pcap = bool(getattr(args, "write", None))

    def rendered(rec: ApduRecord) -> Rendered | None:
        as_json = rec.to_json() if keep is not None or mode == "json" else None
        if keep is not None and not keep(as_json):
            return None
        return Rendered(render(rec, mode, as_json), pcap_item(rec) if want_pcap else None,
                        rec.number, mode)

    return rendered


def _emit(out: TextIO, args: argparse.Namespace, items: Iterable[Any]) -> list[dict]:
    """Write rendered records (and the end-of-input findings); return association stats."""
    from dissector.analysis.parallel import Rendered

    writer = Writer(out, _mode(args), flush_each=False)
    pcap = None
    if getattr(args, "write", None):
        from dissector.output.pcap import PcapOut

        pcap = PcapOut(args.write)
    stats: list[dict] = []
    try:
        for item in items:
            if isinstance(item, Rendered):
                writer.write_text(item.text)
                if pcap is not None:
                    pcap.write_item(item.pcap)
            elif item[0] == "end":
                writer.end(item[1])
            elif item[0] == "stats":
                stats = item[1]
    finally:
        out.flush()
        if pcap is not None:
            pcap.close()
    return stats


def _serial(dis: Dissector, records: Iterable[ApduRecord], render: Any) -> Iterator[Any]:
    from dissector.analysis.capture import association_stats

    for rec in records:
        shown = render(rec)
        if shown is not None:
            yield shown
    yield ("end", dis.finish())
    yield ("stats", association_stats(dis))


def _numbered_filter(args: argparse.Namespace) -> bool:
    """A -Y filter on the record number: only the serial run knows numbers while filtering."""
    from dissector.output.filter import filter_fields

    return bool(args.filter) and "number" in filter_fields(args.filter)


def cmd_read(args: argparse.Namespace, out: TextIO) -> int:
    from dissector.analysis.capture import dissect_capture, stats_text
    from dissector.framing.splitter import parse_port_spec

    store = load_keys(args)
    ports = dict(parse_port_spec(p) for p in args.port) or None
    render = _renderer(args)
    if args.jobs > 1 and not _numbered_filter(args):
        from dissector.analysis.parallel import run_parallel

        items: Iterable[Any] = run_parallel(args.capture, ports, store, args.jobs, render,
                                            keep_stats=args.stats)
    else:
        dis = Dissector(store, keep_stats=args.stats)
        items = _serial(dis, dissect_capture(args.capture, dis, ports), render)
    stats = _emit(out, args, items)
    if args.stats:
        out.write(stats_text(stats))
    return 0


def cmd_decode(args: argparse.Namespace, out: TextIO) -> int:
    from dissector.sources.hexinput import HexInput, parse_hex

    store = load_keys(args)
    lines = args.hex or [line for line in sys.stdin.read().splitlines() if line.strip()]
    data = [parse_hex(line) for line in lines]
    dis = Dissector(store)
    feed = HexInput(dis)

    def records() -> Iterator[ApduRecord]:
        for n, chunk in enumerate(data, 1):
            yield from feed.line(chunk, n)
        yield from feed.finish()

    _emit(out, args, _serial(dis, records(), _renderer(args)))
    return 0


def cmd_keys_check(args: argparse.Namespace, out: TextIO) -> int:
    problems = check_keystore(args.file)
    for p in problems:
        out.write(f"{p}\n")
    errors = [p for p in problems if p.severity == "error"]
    if not problems:
        out.write(f"{args.file}: OK\n")
    return 1 if errors else 0


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        if args.command == "decode":
            return cmd_decode(args, out)
        if args.command == "read":
            return cmd_read(args, out)
        if args.command == "keys":
            return cmd_keys_check(args, out)
        if args.command in ("sniff", "extcap"):
            return run_sniff(args, out)
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
    return 2


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__


if __name__ == "__main__":
    sys.exit(main())
