"""`dlms-dissect sniff serial|tcp` and `dlms-dissect extcap`: live capture on the command line.

`add_parsers(sub)` adds the parsers to the `dlms-dissect` subcommands; `run(args, out)` runs
one (`args.command` is "sniff" or "extcap").
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from dissector.cli import extcap
from dissector.cli.common import key_options, load_keys, mode, output_options, renderer
from dissector.cli.options import serial_line_options
from dissector.sources.tcp import DLMS_PORT

if TYPE_CHECKING:
    from dissector.live.dissection import LiveDissection
    from dissector.live.passive import PassiveSniffer
    from dissector.live.serial import SerialSniffer
    from dissector.live.tap import TcpTap

# The live sources (and Scapy's sending, routing and sniffing they pull in) load only when a
# live command runs: `read` and `decode` start quicker.

COMMANDS = ("sniff", "extcap")

def _common(p: argparse.ArgumentParser) -> None:
    output_options(p)
    p.add_argument("-Y", dest="display_filter", metavar="FILTER",
                   help="display filter on JSON fields (as for read)")
    p.add_argument("-w", dest="write", metavar="OUT.pcapng",
                   help="write every received byte here first (serial: link type 147 with "
                        "direction flags; TCP: as captured)")
    p.add_argument("--stats", action="store_true",
                   help="per-association statistics when stopped (Ctrl-C)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    p.add_argument("--flow", metavar="OUT.html",
                   help="write the association flow diagram when the capture stops")
    key_options(p)


def add_parsers(subparsers: Any) -> None:
    """Add `sniff serial`, `sniff tcp` and `extcap` to the `dlms-dissect` subcommands."""
    sniff = subparsers.add_parser("sniff", help="dissect live traffic: serial taps, a TCP tap "
                                                "or an interface")
    ssub = sniff.add_subparsers(dest="sniff_command", required=True)
    ser = ssub.add_parser("serial", help="one port (half-duplex bus) or two (Y-tap)",
                          epilog="""examples:
  dlms-dissect sniff serial /dev/ttyUSB0 --baud 9600 -w line.pcapng --keys meters.toml
  dlms-dissect sniff serial /dev/ttyUSB0 /dev/ttyUSB1 --json      (a Y-tap)
  dlms-dissect sniff serial /dev/ttyUSB0 --sign-on --flow flow.html  (optical probe)
""", formatter_class=argparse.RawDescriptionHelpFormatter)
    ser.add_argument("port", help="serial device or pyserial URL; with two ports, the one on "
                                  "the client's transmit line")
    ser.add_argument("port2", nargs="?", help="second port: the one on the meter's line")
    serial_line_options(ser)
    _common(ser)
    tcp = ssub.add_parser("tcp", epilog="""examples:
  dlms-dissect sniff tcp --iface eth0 --keys meters.toml
  dlms-dissect sniff tcp --listen 0.0.0.0:4059 --forward 192.0.2.10:4059 -w tap.pcapng
""", formatter_class=argparse.RawDescriptionHelpFormatter,
                          help="passive capture on an interface, or an active tap between"
                               " client and meter")
    where = tcp.add_mutually_exclusive_group(required=True)
    where.add_argument("--iface", metavar="IF", help="capture on this interface")
    where.add_argument("--listen", metavar="HOST:PORT", help="tap: accept clients here ...")
    tcp.add_argument("--forward", metavar="HOST:PORT", help="... and relay them to the meter")
    tcp.add_argument("--port", action="append", default=[], metavar="N[:wrapper|hdlc]",
                     help=f"DLMS port (default {DLMS_PORT}; repeatable)")
    tcp.add_argument("--filter", dest="bpf", metavar="BPF",
                     help="capture filter (default: tcp port N for each --port)")
    tcp.add_argument("--engine", choices=("scapy", "tshark"), default="scapy",
                     help="passive capture through Scapy (default) or tshark (pyshark)")
    tcp.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                     help="tap: how long to retry reaching the meter (default 10)")
    _common(tcp)
    ext = subparsers.add_parser("extcap", help="Wireshark extcap interface 'DLMS serial tap'")
    extcap.add_arguments(ext)


def parse_endpoint(text: str, default_host: str | None = None) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` (or `PORT` with a default host) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host:
        if default_host is None:
            raise ValueError(f"bad address {text!r}: expected HOST:PORT")
        host, port = default_host, port or text
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"bad address {text!r}: expected HOST:PORT") from None
    if not 0 <= number < 65536:
        raise ValueError(f"bad address {text!r}: port out of range")
    return host, number


def dlms_ports(specs: list[str]) -> dict[int, str | None]:
    """`--port` values (`4059`, `4061:wrapper`) -> {port: transport or None to detect}."""
    from dissector.framing.splitter import parse_port_spec

    ports: dict[int, str | None] = {}
    for spec in specs or [str(DLMS_PORT)]:
        if ":" in spec:
            port, transport = parse_port_spec(spec)
            ports[port] = transport
        else:
            if not spec.isdigit() or not 0 < int(spec) < 65536:
                raise ValueError(f"bad port {spec!r}: expected 1-65535 or N:wrapper|hdlc")
            ports[int(spec)] = None
    return ports


def make_source(args: argparse.Namespace, dissection: LiveDissection | None,
                stop: threading.Event) -> SerialSniffer | TcpTap | PassiveSniffer:
    """The live source the arguments describe (not opened yet)."""
    from dissector.live.passive import PassiveSniffer
    from dissector.live.rawcapture import LiveError
    from dissector.live.serial import SerialSettings, SerialSniffer
    from dissector.live.tap import TcpTap

    if args.sniff_command == "serial":
        settings = SerialSettings(args.baud, args.bytesize, args.parity, args.stopbits, args.gap)
        ports = [args.port] + ([args.port2] if args.port2 else [])
        return SerialSniffer(ports, settings, dissection=dissection, capture_path=args.write,
                             sign_on=args.sign_on, stop=stop)
    ports = dlms_ports(args.port)
    if args.listen:
        if not args.forward:
            raise LiveError("--listen needs --forward HOST:PORT (the meter)")
        return TcpTap(parse_endpoint(args.listen, "0.0.0.0"), parse_endpoint(args.forward),
                      dissection=dissection, capture_path=args.write, ports=ports, stop=stop,
                      connect_timeout=args.connect_timeout)
    if args.forward:
        raise LiveError("--forward goes with --listen (the tap); --iface captures passively")
    bpf = args.bpf or " or ".join(f"tcp port {p}" for p in ports)
    return PassiveSniffer(args.iface, bpf, engine=args.engine, dissection=dissection,
                          capture_path=args.write, ports=ports, stop=stop)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run `sniff serial`, `sniff tcp` or `extcap` until Ctrl-C (or `--duration`)."""
    if args.command == "extcap":
        return extcap.run(args, out)
    from dissector.analysis.capture import stats_text
    from dissector.analysis.pipeline import Dissector
    from dissector.live.base import stop_on_signals
    from dissector.live.dissection import LiveDissection
    from dissector.live.rawcapture import LiveError

    dis = Dissector(load_keys(args))
    stop = threading.Event()
    try:
        flow = None
        if args.flow:
            from dissector.output.flow import FlowWriter

            flow = FlowWriter(args.flow, f"live {args.sniff_command}")
        dissection = LiveDissection(dis, out, renderer(args, args.display_filter), flow,
                                    args.time_format or "e")
        source = make_source(args, dissection, stop)
        source.open()
    except LiveError as exc:
        sys.stderr.write(f"dlms-dissect: {exc}\n")
        return 2
    sys.stderr.write(f"dlms-dissect: {source.describe()}; Ctrl-C to stop\n")
    sys.stderr.flush()
    with stop_on_signals(stop, source.hurry):
        source.run(args.duration)
    if source.capture is not None:
        sys.stderr.write(f"dlms-dissect: stopped; {source.capture.describe()}\n")
    if args.stats:  # as `read`: on stderr when stdout carries JSON or fields
        where = sys.stderr if mode(args) in ("json", "json-array", "fields") else out
        where.write(stats_text(dis.tracker.summaries()))
        where.flush()
    return 0
