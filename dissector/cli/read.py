"""`dlms-dissect read`: capture files, serially or in `--jobs` worker processes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from typing import Any, BinaryIO, TextIO

from dissector.cli.common import (
    UsageError,
    emit,
    key_options,
    load_keys,
    mode,
    output_options,
    positive,
    renderer,
)
from dissector.cli.progress import Progress


def add_parser(sub: Any) -> None:
    rd = sub.add_parser("read", help="dissect capture files (pcap or pcapng)",
                        description="Dissect capture files: every APDU, deciphered where the"
                                    " keys allow, with the key that protected it.",
                        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    rd.add_argument("capture", nargs="*",
                    help="one capture, or several read one after the other as one capture"
                         " (ring-buffer files in order)")
    rd.add_argument("-r", dest="read_files", action="append", default=[], metavar="FILE",
                    help="a capture to read, as tshark -r (repeatable; with the positional"
                         " ones, in order)")
    rd.add_argument("-c", dest="count", type=positive, metavar="N",
                    help="read only the first N capture records (frames), as tshark -c")
    output_options(rd)
    rd.add_argument("-Y", dest="filter", metavar="FILTER",
                    help='display filter on JSON fields, e.g. \'security.key_kind == "dedicated"\'')
    rd.add_argument("-w", dest="write", metavar="OUT.pcapng",
                    help="write the annotated export for Wireshark's dlmsd plugin: each APDU"
                         " (deciphered) as wrapper-over-UDP-4059 with its record, the link"
                         " messages and findings as packets of their own (the capture itself"
                         " is the input file)")
    rd.add_argument("--flow", metavar="OUT.html",
                    help="write the association flow diagram (one self-contained HTML page)")
    rd.add_argument("--stats", action="store_true",
                    help="per-association statistics at the end (on stdout after the text"
                         " output; on stderr when stdout carries JSON or fields, so that the"
                         " records stay one clean stream)")
    rd.add_argument("-z", dest="statistics", action="append", default=[], metavar="STAT",
                    help="statistics, as tshark -z: `assoc` (the same as --stats)")
    rd.add_argument("-q", dest="quiet", action="store_true",
                    help="no records: only the statistics (on stdout), the -w export and the"
                         " --flow page, as tshark -q")
    rd.add_argument("--jobs", type=jobs, default=1, metavar="N|auto",
                    help="dissect associations in N processes (output stays in capture order);"
                         " `auto`: one per CPU this process may use; 1 (the default) reads"
                         " in this process")
    rd.add_argument("--port", action="append", default=[], metavar="N:wrapper|hdlc|raw|mbus",
                    help="force the transport on a TCP/UDP port (repeatable)")
    key_options(rd)


EXAMPLES = """examples:
  dlms-dissect read pcaps/seed-case.pcap --keys pcaps/seed-case.keys.toml
  dlms-dissect read -r capture.pcapng -V --keys meters.toml
  dlms-dissect read capture.pcap -Y 'security.key_kind == "dedicated"' --json
  dlms-dissect read capture.pcap -T fields -e number -e apdu -e security.key_kind -E header=y
  dlms-dissect read ring_00001.pcapng ring_00002.pcapng --jobs 2 --stats
  dlms-dissect read capture.pcap --keys meters.toml --json --jobs auto
  dlms-dissect read capture.pcap --port 4061:hdlc -w deciphered.pcapng
"""


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one, as
    taskset or a container's cpuset narrows it), else the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def jobs(text: str) -> int:
    """`--jobs`: a positive count, or `auto` for the usable CPUs."""
    if text.strip().lower() == "auto":
        return usable_cpus()
    try:
        return positive(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a number of processes (1 or more) or auto") from None


#: What -z names.
STATISTICS = ("assoc",)


def _numbered_filter(args: argparse.Namespace) -> bool:
    """A -Y filter on the record number: only the serial run knows numbers while filtering."""
    from dissector.output.filter import filter_fields

    return bool(args.filter) and "number" in filter_fields(args.filter)


def _opened(path: str) -> BinaryIO:
    """A capture file opened for reading (errors as the reader words them)."""
    from dissector.sources.capture import CaptureError

    try:
        return open(path, "rb")
    except OSError as exc:
        raise CaptureError(f"{path}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace, out: TextIO) -> int:
    from dissector.analysis.capture import run_serial, stats_text, units_of_capture
    from dissector.analysis.pipeline import Dissector
    from dissector.framing.splitter import parse_port_spec

    files = [*args.capture, *args.read_files]
    if not files:
        raise UsageError("read: give a capture file (or -r FILE)")
    for stat in args.statistics:
        if stat.split(",")[0] not in STATISTICS:
            raise UsageError(f"-z {stat.split(',')[0]}: not a statistic of dlms-dissect (it has:"
                             f" {', '.join(STATISTICS)})")
    args.stats = args.stats or bool(args.statistics)
    store = load_keys(args)
    ports = dict(parse_port_spec(p) for p in args.port) or None
    parallel = args.jobs > 1 and not _numbered_filter(args)
    render = renderer(args, args.filter, later=not parallel)
    progress = Progress(None, enabled=False)
    items: Iterable[Any]
    if parallel:
        from dissector.analysis.parallel import run_parallel

        progress = Progress(None)
        items = run_parallel(files, ports, store, args.jobs, render, keep_stats=args.stats,
                             count=args.count)
    else:
        sources: list[Any] = files
        if sys.stderr.isatty():  # progress: the bytes read of each file
            sources = [p if p == "-" else _opened(p) for p in files]
            progress = Progress([s for s in sources if s != "-"])
        dis = Dissector(store, keep_stats=args.stats)
        items = run_serial(dis, units_of_capture(sources, ports, args.count), render)
    stats = emit(out, args, items, progress)
    if args.stats:
        machine = mode(args) in ("json", "json-array", "fields") and not args.quiet
        where = sys.stderr if machine else out
        where.write(stats_text(stats))
        where.flush()
    return 0
