"""Wireshark extcap: "DLMS serial tap" captures HDLC from one or two serial adapters live.

Wireshark runs the programs in its extcap folder with `--extcap-interfaces`, then
`--extcap-interface IF --extcap-dlts` / `--extcap-config`, and finally
`--capture --extcap-interface IF --fifo PATH` plus the options the user chose. The capture goes
to the fifo as pcapng, link type 147 (DLT_USER0) with direction flags, exactly what
`dlms-dissect sniff serial -w` writes; it stops on SIGTERM/SIGINT or when Wireshark closes the
fifo. `dlms-dissect extcap --install [DIR]` writes a launcher into Wireshark's personal extcap
folder (the launcher runs `python -m dissector.cli.extcap`, which ignores options it does not know).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import threading
from pathlib import Path
from typing import TextIO

from dissector.cli.common import version
from dissector.sources.frames import LINKTYPE_USER0

INTERFACE = "dlms-serial"
DISPLAY = "DLMS serial tap"
LAUNCHER = "dlms-serial-tap"
BAUDS = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
DEFAULT_BAUD = 9600


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options Wireshark passes (protocol and capture options) and `--install`."""
    g = p.add_argument_group("extcap protocol (used by Wireshark)")
    g.add_argument("--extcap-interfaces", action="store_true", help="list the interfaces")
    g.add_argument("--extcap-version", nargs="?", const="", metavar="VERSION")
    g.add_argument("--extcap-interface", metavar="IF")
    g.add_argument("--extcap-dlts", action="store_true", help="link types of --extcap-interface")
    g.add_argument("--extcap-config", action="store_true", help="options of --extcap-interface")
    g.add_argument("--extcap-capture-filter", metavar="FILTER", help="(not used)")
    g.add_argument("--extcap-control-in", metavar="PIPE", help="(not used)")
    g.add_argument("--extcap-control-out", metavar="PIPE", help="(not used)")
    g.add_argument("--extcap-reload-option", metavar="OPTION", help="(not used)")
    g.add_argument("--debug", action="store_true", help="(not used)")
    g.add_argument("--debug-file", metavar="FILE", help="(not used)")
    g.add_argument("--capture", action="store_true", help="capture into --fifo")
    g.add_argument("--fifo", metavar="PATH", help="where the pcapng goes")
    c = p.add_argument_group("capture options")
    c.add_argument("--port", metavar="DEVICE", help="serial port (the client's line with two)")
    c.add_argument("--port2", metavar="DEVICE", help="second port: the meter's line (Y-tap)")
    c.add_argument("--baud", type=int, default=DEFAULT_BAUD)
    c.add_argument("--bytesize", type=int, choices=(5, 6, 7, 8), default=8)
    c.add_argument("--parity", type=str.upper, choices=("N", "E", "O", "M", "S"), default="N")
    c.add_argument("--stopbits", type=float, choices=(1, 1.5, 2), default=1)
    c.add_argument("--gap", type=float, metavar="SECONDS",
                   help="silence that ends a frame (default: 10 character times, >= 0.05 s)")
    c.add_argument("--sign-on", action="store_true",
                   help="start at 300 Bd 7E1 (IEC 62056-21 sign-on) and follow the switch")
    p.add_argument("--install", nargs="?", const="", metavar="DIR",
                   help="write the launcher into Wireshark's extcap folder "
                        "(default ~/.local/lib/wireshark/extcap)")


def interfaces_text() -> str:
    """Answer to `--extcap-interfaces`."""
    return (f"extcap {{version={version()}}}{{display=DLMS/COSEM serial capture}}\n"
            f"interface {{value={INTERFACE}}}{{display={DISPLAY}}}\n")


def dlts_text() -> str:
    """Answer to `--extcap-dlts`."""
    return f"dlt {{number={LINKTYPE_USER0}}}{{name=USER0}}{{display=HDLC (IEC 62056-46)}}\n"


def _serial_ports() -> list[tuple[str, str]]:
    try:
        from serial.tools.list_ports import comports
    except ImportError:
        return []
    return sorted((p.device, p.description or p.device) for p in comports())


def config_text() -> str:
    """Answer to `--extcap-config`: the options of the capture dialog."""
    ports = _serial_ports()
    lines = ["arg {number=0}{call=--port}{display=Serial port}{type=editselector}"
             "{required=true}{tooltip=The adapter on the line (half-duplex), or on the "
             "client's line with two}"]
    lines += [f"value {{arg=0}}{{value={dev}}}{{display={dev} ({desc})}}" for dev, desc in ports]
    lines.append("arg {number=1}{call=--port2}{display=Second port (Y-tap)}{type=editselector}"
                 "{tooltip=Optional: the adapter on the meter's line}")
    lines += [f"value {{arg=1}}{{value={dev}}}{{display={dev} ({desc})}}" for dev, desc in ports]
    lines.append("arg {number=2}{call=--baud}{display=Baud rate}{type=selector}")
    lines += [f"value {{arg=2}}{{value={b}}}{{display={b}}}"
              + ("{default=true}" if b == DEFAULT_BAUD else "") for b in BAUDS]
    lines.append("arg {number=3}{call=--bytesize}{display=Data bits}{type=selector}")
    lines += ["value {arg=3}{value=8}{display=8}{default=true}",
              "value {arg=3}{value=7}{display=7}"]
    lines.append("arg {number=4}{call=--parity}{display=Parity}{type=selector}")
    lines += ["value {arg=4}{value=N}{display=none}{default=true}",
              "value {arg=4}{value=E}{display=even}", "value {arg=4}{value=O}{display=odd}"]
    lines.append("arg {number=5}{call=--stopbits}{display=Stop bits}{type=selector}")
    lines += ["value {arg=5}{value=1}{display=1}{default=true}",
              "value {arg=5}{value=2}{display=2}"]
    lines.append("arg {number=6}{call=--sign-on}{display=IEC 62056-21 sign-on}{type=boolflag}"
                 "{tooltip=Start at 300 Bd 7E1 and follow the baud rate the acknowledgement "
                 "selects (optical probe, mode E)}")
    lines.append("arg {number=7}{call=--gap}{display=Frame gap (s)}{type=double}"
                 "{tooltip=Silence that ends a frame; empty: 10 character times, at least "
                 "0.05 s}")
    return "\n".join(lines) + "\n"


def launcher_text() -> str:
    """The executable Wireshark finds in its extcap folder."""
    return ("#!/bin/sh\n# Wireshark extcap launcher: DLMS serial tap (dlms-dissector)\n"
            f'exec {shlex.quote(sys.executable)} -m dissector.cli.extcap "$@"\n')


def default_extcap_dir() -> Path:
    """Wireshark's personal extcap folder on Linux and macOS (Help > About > Folders)."""
    return Path.home() / ".local" / "lib" / "wireshark" / "extcap"


def install(directory: str | None = None) -> Path:
    """Write the launcher (mode 755) into `directory`; its path."""
    folder = Path(directory) if directory else default_extcap_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LAUNCHER
    path.write_text(launcher_text())
    path.chmod(0o755)
    return path


def capture(args: argparse.Namespace) -> int:
    """`--capture`: serial ports -> pcapng into the fifo until stopped."""
    if not args.fifo or not args.port:
        sys.stderr.write("extcap capture needs --fifo PATH and --port DEVICE\n")
        return 2
    from dissector.live.base import stop_on_signals
    from dissector.live.rawcapture import LiveError
    from dissector.live.serial import SerialSettings, SerialSniffer

    ports = [args.port] + ([args.port2] if args.port2 else [])
    settings = SerialSettings(args.baud, args.bytesize, args.parity, args.stopbits, args.gap)
    stop = threading.Event()
    try:
        sniffer = SerialSniffer(ports, settings, capture_path=args.fifo, sign_on=args.sign_on,
                                stop=stop)
        sniffer.open()
    except LiveError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    with stop_on_signals(stop, sniffer.hurry):
        sniffer.run()
    return 0


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Answer one extcap call."""
    if args.install is not None:
        out.write(f"installed {install(args.install or None)}\n")
        return 0
    if args.extcap_interfaces:
        out.write(interfaces_text())
        return 0
    if args.extcap_interface not in (None, INTERFACE):
        sys.stderr.write(f"unknown interface {args.extcap_interface!r} (only {INTERFACE})\n")
        return 1
    if args.extcap_dlts:
        out.write(dlts_text())
        return 0
    if args.extcap_config:
        out.write(config_text())
        return 0
    if args.capture:
        return capture(args)
    sys.stderr.write("nothing to do: give --extcap-interfaces, --extcap-dlts, --extcap-config, "
                     "--capture or --install\n")
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=LAUNCHER, description=f"Wireshark extcap: {DISPLAY}")
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the launcher: options this version does not know are ignored, as
    newer Wireshark versions may pass more."""
    args, _unknown = build_parser().parse_known_args(argv)
    out = sys.stdout
    status = run(args, out)
    out.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
