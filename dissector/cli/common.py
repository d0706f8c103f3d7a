"""What the commands share: the argument parser that never echoes values, the key and output
options, loading the keystore, and writing numbered records."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from dissector.analysis.capture import End, Numbered
from dissector.cli.options import UsageError
from dissector.cli.progress import Progress
from dissector.output.columns import Columns
from dissector.output.render import TIME_FORMATS, Renderer, Writer
from keys.keystore import Keystore, default_keystore_path, keystore_from_flags, load_keystore

KEY_FLAGS = ("ek", "ak", "bek", "kek", "dk", "hls_secret", "client_title", "server_title")
KEY_HELP = {
    "ek": "global unicast encryption key (GUEK)",
    "ak": "authentication key (it enters the AAD and the GMAC of HLS 5)",
    "bek": "global broadcast encryption key (GBEK, SC bit 6)",
    "kek": "master key: unwraps key_transfer and general-ciphering wrapped keys",
    "dk": "a static dedicated key (when the capture lacks the AARQ that carries it)",
    "hls_secret": "HLS secret of mechanisms 2, 3, 4 and 6",
    "client_title": "the client's system title (8 bytes), when no AARQ gives it",
    "server_title": "the meter's system title (8 bytes), when no AARE gives it",
}


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def key_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("keys (hex or text:...; @FILE or env:NAME keeps a key off the "
                             "command line, where ps shows it; never echoed)")
    g.add_argument("--keys", metavar="FILE", help="keystore TOML file (default: $DLMS_KEYS)")
    for flag in KEY_FLAGS:
        g.add_argument("--" + flag.replace("_", "-"), dest=flag, metavar="KEY",
                       help=KEY_HELP[flag])


def output_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("-V", dest="verbose", action="store_true",
                   help="print the full tree of each APDU (every field, the security control"
                        " byte bit by bit, the deciphered APDU under its envelope)")
    g.add_argument("--json", action="store_true",
                   help="one JSON object per APDU, one a line (the same as -T jsonl)")
    g.add_argument("--color", "--colour", dest="color", choices=("auto", "always", "never"),
                   default="auto",
                   help="severities in colour, as Wireshark colours them: auto (when the"
                        " output is a terminal), always, never")
    g.add_argument("-x", dest="hex_dump", action="store_true",
                   help="after each record, a hex dump of the frame bytes and of the"
                        " deciphered APDU, as tshark -x")
    g.add_argument("-t", dest="time_format", choices=TIME_FORMATS, metavar="FORMAT",
                   help="time column of the text output, as tshark -t: e epoch seconds"
                        " (default), r since the first record, d since the previous record,"
                        " dd since the previous one shown, a/ad local time (and date), u/ud"
                        " UTC time (and date)")
    g.add_argument("-T", dest="format", choices=("text", "json", "jsonl", "fields"),
                   help="output format: text (summary, or the tree with -V), json (one array,"
                        " as tshark -T json), jsonl (one object a line), fields (-e)")
    g.add_argument("-e", dest="fields", action="append", default=[], metavar="FIELD",
                   help="with -T fields: a field to print (repeatable; `dlms-dissect fields`"
                        " lists them, e.g. -e number -e apdu -e security.key_kind)")
    g.add_argument("-E", dest="field_options", action="append", default=[],
                   metavar="OPTION=VALUE",
                   help="with -T fields, as tshark: header=y|n, separator=/t|/s|C,"
                        " occurrence=f|l|a, aggregator=/s|C, quote=d|s|n")


def flag_value(flag: str, raw: str | None) -> str | None:
    """A key flag's value: `@FILE` reads it from a file, `env:NAME` from an environment
    variable (neither shows in `ps` or /proc/PID/cmdline, as a value on the command line
    does), anything else is the value itself. Errors never repeat what was read."""
    if raw is None or not raw.startswith(("@", "env:")):
        return raw
    option = "--" + flag.replace("_", "-")
    if raw.startswith("@"):
        try:
            return Path(raw[1:]).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise UsageError(f"{option} @{raw[1:]}: cannot read the file ({why})") from None
    value = os.environ.get(raw[4:])
    if value is None:
        raise UsageError(f"{option} {raw}: the environment variable is not set")
    return value.strip()


def load_keys(args: argparse.Namespace) -> Keystore:
    """Flags first (`flag_value`), then --keys FILE (or $DLMS_KEYS)."""
    flags = {k: flag_value(k, getattr(args, k, None)) for k in KEY_FLAGS}
    store = keystore_from_flags(**flags)
    path = getattr(args, "keys", None) or default_keystore_path()
    if path:
        store = store.merged(load_keystore(path))
        for warning in store.warnings:
            sys.stderr.write(f"dlms-dissect: {warning}\n")
    return store


def mode(args: argparse.Namespace) -> str:
    """The output mode the options ask for (the `-T` format wins over --json and -V)."""
    form = getattr(args, "format", None)
    if form == "fields":
        return "fields"
    if form == "json":
        return "json-array"
    if form == "jsonl" or args.json:
        return "json"
    return "tree" if args.verbose else "summary"


def columns(args: argparse.Namespace) -> Columns | None:
    """The `-e`/`-E` columns of `-T fields`; a usage error when they come without it."""
    if mode(args) != "fields":
        if getattr(args, "fields", None) or getattr(args, "field_options", None):
            raise UsageError("-e and -E go with -T fields")
        return None
    return Columns.parse(args.fields, args.field_options)


def renderer(args: argparse.Namespace, display_filter: str | None = None,
             later: bool = False) -> Renderer:
    """The records' rendering the options ask for (format, display filter, `-w` export;
    `later`: its packets made by the writer in batches, in a serial run)."""
    return Renderer(mode(args), display_filter, export=bool(getattr(args, "write", None)),
                    columns=columns(args), flow=bool(getattr(args, "flow", None)),
                    colour=colour(args), dump=bool(getattr(args, "hex_dump", False)),
                    later=later)


def colour(args: argparse.Namespace) -> bool:
    """Whether severities are coloured: `--color`, `auto` when stdout is a terminal."""
    choice = getattr(args, "color", "auto")
    if choice == "auto":
        return sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    return choice == "always"


def emit(out: TextIO, args: argparse.Namespace, items: Iterable[Numbered | End],
         progress: Progress | None = None) -> list[dict]:
    """Write numbered records (and the end-of-input findings) to `out` and to the `-w`
    export; return the association summaries."""
    quiet = bool(getattr(args, "quiet", False))
    writer = Writer(out, mode(args), flush_each=False, columns=None if quiet else columns(args),
                    time_format=getattr(args, "time_format", None) or "e")
    pcap = None
    if getattr(args, "write", None):
        from dissector.output.pcap import PcapOut

        pcap = PcapOut(args.write)
    flow = None
    if getattr(args, "flow", None):
        from dissector.output.flow import FlowWriter

        sources = [*getattr(args, "capture", []), *getattr(args, "read_files", [])]
        flow = FlowWriter(args.flow, " ".join(sources))
    stats: list[dict] = []
    try:
        for item in items:
            if isinstance(item, Numbered):
                if progress is not None:
                    progress.record()
                if item.item is None:
                    writer.skipped(item.time)
                    continue
                if not quiet:
                    writer.write(item.item, item.number)
                if pcap is not None:
                    pcap.write_item(item.item.pcap)
                if flow is not None and item.item.flow is not None:
                    item.item.flow["number"] = item.number  # capture-wide under --jobs
                    flow.add(item.item.flow)
            else:
                if not quiet:
                    writer.end(item.findings)
                if pcap is not None:
                    pcap.end(item.findings)
                stats = item.summaries
        if not quiet:
            writer.close()
    finally:
        if progress is not None:
            progress.close()
        out.flush()
        if pcap is not None:
            pcap.close()
        if flow is not None:
            flow.close()
    return stats
