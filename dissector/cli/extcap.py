"""Wireshark extcap: "DLMS serial tap" and "DLMS deciphering tap".

Wireshark runs the programs in its extcap folder with `--extcap-interfaces`, then
`--extcap-interface IF --extcap-dlts` / `--extcap-config`, and finally
`--capture --extcap-interface IF --fifo PATH` plus the options the user chose (in tshark:
`-o extcap.<interface, - as _>.<option, - as _>:VALUE`). Both interfaces write pcapng into the
fifo, flushed per packet, until Wireshark stops them (SIGTERM, or the fifo closed):

- `dlms-serial`: every byte of one or two serial lines, link type 147 (DLT_USER0) with
  direction flags, exactly what `dlms-dissect sniff serial -w` writes.
- `dlms-decipher`: a serial line, a TCP relay or passive TCP (as `sniff` offers) through the
  whole dissector with the user's keystore; each APDU as `read -w` exports it (the deciphered
  APDU over UDP 4059, the record in a packet comment) as soon as it completes, for the Lua
  plugin `dlmsd` (`dlms-dissect wireshark --install`).

Only argument types Wireshark 4.0 knows are offered (`string`, `selector`, `boolflag`,
`double`, `fileselect`); options this program does not know are ignored (newer Wireshark
versions may pass more). `dlms-dissect wireshark --install` writes the launcher.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from dissector.cli.options import DEFAULT_BAUD, serial_line_options, version
from dissector.linktypes import LINKTYPE_ETHERNET, LINKTYPE_USER0

if TYPE_CHECKING:  # the queries Wireshark makes at every start load none of these
    from dissector.live.base import LiveSource
    from dissector.output.pcap import PcapOut
    from dissector.output.render import Rendered
    from layers.expert import Finding

SERIAL_IF, SERIAL_DISPLAY = "dlms-serial", "DLMS serial tap"
TAP_IF, TAP_DISPLAY = "dlms-decipher", "DLMS deciphering tap"
INTERFACES = {SERIAL_IF: SERIAL_DISPLAY, TAP_IF: TAP_DISPLAY}
LAUNCHER = "dlms-extcap"
#: Launchers earlier versions installed: replaced (they would list the serial tap twice).
OLD_LAUNCHERS = ("dlms-serial-tap",)
MARK = "# Wireshark extcap launcher (dlms-dissector)"
BAUDS = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)

SOURCES = ("serial", "tcp-tap", "tcp-passive")
#: How long an extcap that cannot capture waits for Wireshark to open the fifo (to close it).
FIFO_WAIT = 10.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options Wireshark passes (protocol and capture options) and `--install`."""
    g = p.add_argument_group("extcap protocol (used by Wireshark)")
    g.add_argument("--extcap-interfaces", action="store_true", help="list the interfaces")
    g.add_argument("--extcap-version", nargs="?", const="", metavar="VERSION",
                   help="the Wireshark version that calls (given by Wireshark)")
    g.add_argument("--extcap-interface", metavar="IF",
                   help="the interface a call is about (dlms-serial or dlms-decipher)")
    g.add_argument("--extcap-dlts", action="store_true", help="link types of --extcap-interface")
    g.add_argument("--extcap-config", action="store_true", help="options of --extcap-interface")
    for unused in ("--extcap-capture-filter", "--extcap-control-in", "--extcap-control-out",
                   "--extcap-reload-option", "--debug-file"):
        g.add_argument(unused, metavar="X", help="(not used)")
    g.add_argument("--debug", action="store_true", help="(not used)")
    g.add_argument("--capture", action="store_true", help="capture into --fifo")
    g.add_argument("--fifo", metavar="PATH", help="where the pcapng goes")
    c = p.add_argument_group("capture options")
    c.add_argument("--port", metavar="DEVICE", help="serial port typed (the client's line with "
                                                    "two); wins over --port-found")
    c.add_argument("--port-found", metavar="DEVICE", help="serial port chosen from those found")
    c.add_argument("--port2", metavar="DEVICE", help="second port: the meter's line (Y-tap)")
    c.add_argument("--port2-found", metavar="DEVICE", help="second port chosen from those found")
    serial_line_options(c)
    t = p.add_argument_group("deciphering tap options")
    t.add_argument("--source", choices=SOURCES, default="serial",
                   help="what the deciphering tap reads: serial ports, a TCP relay, or"
                        " passive TCP capture")
    t.add_argument("--keys", metavar="FILE", help="keystore TOML file (default: $DLMS_KEYS)")
    t.add_argument("--listen", metavar="HOST:PORT", help="tcp-tap: accept clients here ...")
    t.add_argument("--forward", metavar="HOST:PORT", help="... and relay them to the meter")
    t.add_argument("--iface", metavar="IF", help="tcp-passive: capture on this interface")
    t.add_argument("--tcp-port", metavar="N[:wrapper|hdlc],...",
                   help="DLMS TCP port(s), comma-separated (default 4059)")
    p.add_argument("--install", nargs="?", const="", metavar="DIR",
                   help="write the launcher into DIR (default: where the Wireshark found reads "
                        "extcaps; see `dlms-dissect wireshark --install`)")


def interfaces_text() -> str:
    """Answer to `--extcap-interfaces`."""
    lines = [f"extcap {{version={version()}}}{{display=DLMS/COSEM capture (dlms-dissector)}}"]
    lines += [f"interface {{value={value}}}{{display={display}}}"
              for value, display in INTERFACES.items()]
    return "\n".join(lines) + "\n"


def dlts_text(interface: str) -> str:
    """Answer to `--extcap-dlts`."""
    if interface == TAP_IF:
        return (f"dlt {{number={LINKTYPE_ETHERNET}}}{{name=EN10MB}}"
                "{display=DLMS APDUs over UDP 4059, annotated (dlms-dissector)}\n")
    return f"dlt {{number={LINKTYPE_USER0}}}{{name=USER0}}{{display=HDLC (IEC 62056-46)}}\n"


def _serial_ports() -> list[tuple[str, str]]:
    try:
        from serial.tools.list_ports import comports
    except ImportError:
        return []
    return sorted((p.device, p.description or p.device) for p in comports())


class _Config:
    """Builds `--extcap-config` lines, numbering the arguments."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.number = 0

    def arg(self, call: str, display: str, kind: str, tooltip: str = "", extra: str = "",
            values: tuple[tuple[str, str, bool], ...] = ()) -> None:
        tip = f"{{tooltip={tooltip}}}" if tooltip else ""
        self.lines.append(f"arg {{number={self.number}}}{{call={call}}}{{display={display}}}"
                          f"{{type={kind}}}{tip}{extra}")
        self.lines += [f"value {{arg={self.number}}}{{value={value}}}{{display={shown}}}"
                       + ("{default=true}" if default else "") for value, shown, default in values]
        self.number += 1

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _serial_args(cfg: _Config) -> None:
    found = tuple((dev, f"{dev} ({desc})", False) for dev, desc in _serial_ports())
    typed = ", ".join(dev for dev, _, _ in found) or "none found"
    cfg.arg("--port", "Serial port", "string",
            f"Device path or pyserial URL; the adapter on the line (half-duplex), or on the "
            f"client's line with two. Found: {typed}")
    cfg.arg("--port-found", "Serial port (found)", "selector",
            "Used when no port is typed above", values=found)
    cfg.arg("--port2", "Second port (Y-tap)", "string",
            "Optional: the adapter on the meter's line")
    cfg.arg("--port2-found", "Second port (found)", "selector",
            "Used when no second port is typed above", values=found)
    cfg.arg("--baud", "Baud rate", "selector",
            values=tuple((str(b), str(b), b == DEFAULT_BAUD) for b in BAUDS))
    cfg.arg("--bytesize", "Data bits", "selector", values=(("8", "8", True), ("7", "7", False)))
    cfg.arg("--parity", "Parity", "selector",
            values=(("N", "none", True), ("E", "even", False), ("O", "odd", False)))
    cfg.arg("--stopbits", "Stop bits", "selector", values=(("1", "1", True), ("2", "2", False)))
    cfg.arg("--sign-on", "IEC 62056-21 sign-on", "boolflag",
            "Start at 300 Bd 7E1 and follow the baud rate the acknowledgement selects "
            "(optical probe, mode E)")
    cfg.arg("--gap", "Frame gap (s)", "double",
            "Silence that ends a frame; empty: 10 character times, at least 0.05 s")


def config_text(interface: str = SERIAL_IF) -> str:
    """Answer to `--extcap-config`: the options of the capture dialog."""
    cfg = _Config()
    if interface == TAP_IF:
        cfg.arg("--source", "Source", "selector",
                "serial: a serial line; tcp-tap: relay clients to the meter; tcp-passive: "
                "capture on an interface (root or CAP_NET_RAW)",
                values=(("serial", "serial line", True), ("tcp-tap", "TCP relay (tap)", False),
                        ("tcp-passive", "passive TCP capture", False)))
        cfg.arg("--keys", "Keystore", "fileselect", "The keystore TOML file (default: "
                "$DLMS_KEYS); key bytes never leave the dissector", "{mustexist=true}")
    _serial_args(cfg)
    if interface == TAP_IF:
        cfg.arg("--listen", "Relay: listen on", "string", "tcp-tap: HOST:PORT clients connect to")
        cfg.arg("--forward", "Relay: meter at", "string", "tcp-tap: HOST:PORT of the meter")
        cfg.arg("--iface", "Passive: interface", "string", "tcp-passive: the interface")
        cfg.arg("--tcp-port", "DLMS TCP ports", "string",
                "Comma-separated, N or N:wrapper|hdlc (default 4059)")
    return cfg.text()


def launcher_text() -> str:
    """The executable Wireshark finds in its extcap folder: this interpreter, with the
    directory this package was loaded from first on its path."""
    import dissector

    root = str(Path(dissector.__file__).resolve().parent.parent)
    return (f"#!{sys.executable}\n{MARK}: {SERIAL_DISPLAY}, {TAP_DISPLAY}\n"
            f"import sys\nsys.path.insert(0, {root!r})\n"
            "from dissector.cli.extcap import main\nsys.exit(main())\n")


def default_extcap_dir() -> Path:
    """Wireshark's personal extcap folder (4.2 and later) on Linux and macOS."""
    return Path.home() / ".local" / "lib" / "wireshark" / "extcap"


def install(directory: str | os.PathLike[str] | None = None) -> Path:
    """Write the launcher (mode 755) into `directory`, replacing launchers of earlier
    versions there; its path."""
    folder = Path(directory) if directory else default_extcap_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for old in OLD_LAUNCHERS:
        stale = folder / old
        with contextlib.suppress(OSError):
            if "dlms-dissector" in stale.read_text(errors="replace"):
                stale.unlink()
    path = folder / LAUNCHER
    tmp = folder / f".{LAUNCHER}.tmp"
    tmp.write_text(launcher_text())
    tmp.chmod(0o755)
    tmp.replace(path)
    return path


def _release_fifo(path: str | None) -> None:
    """A capture that cannot start still opens and closes the fifo: Wireshark (dumpcap) waits
    for it, and ends the capture at its end of file instead of waiting until killed."""
    if not path:
        return
    deadline = time.monotonic() + FIFO_WAIT
    while time.monotonic() < deadline:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no reader yet (ENXIO), or no such fifo
            if not os.path.exists(path):
                return
            time.sleep(0.05)
            continue
        os.close(fd)
        return


def _fail(args: argparse.Namespace, message: str) -> int:
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()
    _release_fifo(args.fifo)
    return 1


def _ports(args: argparse.Namespace) -> list[str]:
    first = args.port or args.port_found
    second = args.port2 or args.port2_found
    return [p for p in (first, second) if p]


def _serial_source(args: argparse.Namespace, stop: threading.Event, capture_path: str | None,
                   dissection: Any) -> LiveSource:
    from dissector.live.rawcapture import LiveError
    from dissector.live.serial import SerialSettings, SerialSniffer

    ports = _ports(args)
    if not ports:
        raise LiveError("no serial port: set --port (a device path or pyserial URL) or "
                        "--port-found")
    settings = SerialSettings(args.baud, args.bytesize, args.parity, args.stopbits, args.gap)
    return SerialSniffer(ports, settings, dissection=dissection, capture_path=capture_path,
                         sign_on=args.sign_on, stop=stop)


def _endpoint(text: str | None, what: str, default_host: str | None = None) -> tuple[str, int]:
    from dissector.live.rawcapture import LiveError

    host, _, port = (text or "").rpartition(":")
    host = host.strip("[]") or (default_host or "")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LiveError(f"{what}: expected HOST:PORT")
    return host, int(port)


def _tcp_ports(text: str | None) -> dict[int, str | None]:
    from dissector.framing.splitter import parse_port_spec
    from dissector.live.rawcapture import LiveError
    from dissector.sources.tcp import DLMS_PORT

    ports: dict[int, str | None] = {}
    for spec in (text or str(DLMS_PORT)).replace(" ", "").split(","):
        if ":" in spec:
            port, transport = parse_port_spec(spec)
            ports[port] = transport
        elif spec.isdigit() and 0 < int(spec) < 65536:
            ports[int(spec)] = None
        else:
            raise LiveError(f"bad DLMS TCP port {spec!r}: expected N or N:wrapper|hdlc")
    return ports


def _tap_source(args: argparse.Namespace, stop: threading.Event, dissection: Any) -> LiveSource:
    """The deciphering tap's source: serial, TCP relay or passive TCP."""
    from dissector.live.passive import PassiveSniffer
    from dissector.live.rawcapture import LiveError
    from dissector.live.tap import TcpTap

    if args.source == "serial":
        return _serial_source(args, stop, None, dissection)
    ports = _tcp_ports(args.tcp_port)
    if args.source == "tcp-tap":
        return TcpTap(_endpoint(args.listen, "--listen", "0.0.0.0"),
                      _endpoint(args.forward, "--forward"), dissection=dissection, ports=ports,
                      stop=stop)
    if not args.iface:
        raise LiveError("tcp-passive needs --iface IF")
    return PassiveSniffer(args.iface, " or ".join(f"tcp port {p}" for p in ports),
                          dissection=dissection, ports=ports, stop=stop)


class ExportWriter:
    """Takes a live dissection's records (as its `Writer` would) and streams each APDU's
    export packet into the fifo, and the findings that are not records as packets of their
    own (Wireshark shows an extcap's standard error as a failure); a closed fifo (Wireshark
    stopped reading) stops the capture."""

    def __init__(self, out: PcapOut, stop: threading.Event) -> None:
        self.out = out
        self.stop = stop

    def _send(self, write: Callable[[], None]) -> None:
        if self.stop.is_set() and self.out.stream.closed:
            return
        try:
            write()
        except (OSError, ValueError):  # the fifo closed
            self.stop.set()

    def write(self, item: Rendered, number: int) -> None:
        self._send(lambda: self.out.write_item(item.pcap))

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.out.close()

    def finding(self, f: Finding) -> None:
        """A finding about the live machinery (a lost port): a packet; the capture goes on."""
        self._send(lambda: self.out.finding(f))

    def end(self, findings: list[Finding]) -> None:
        """What never completed, as the export's last packet."""
        self._send(lambda: self.out.end(findings))


def _tap_capture(args: argparse.Namespace, stop: threading.Event
                 ) -> tuple[LiveSource, ExportWriter]:
    from dissector.analysis.pipeline import Dissector
    from dissector.live.dissection import LiveDissection
    from dissector.output.pcap import PcapOut
    from dissector.output.render import Renderer
    from keys.keystore import default_keystore_path, keystore_from_flags, load_keystore

    path = args.keys or default_keystore_path()
    store = load_keystore(path) if path else keystore_from_flags()
    renderer = Renderer("summary", export=True)
    dissection = LiveDissection(Dissector(store), open(os.devnull, "w"), renderer)
    source = _tap_source(args, stop, dissection)
    source.open()  # before the fifo: a port that does not open is reported at once
    writer = ExportWriter(PcapOut(args.fifo, flush_each=True), stop)
    dissection.writer = writer  # type: ignore[assignment]
    return source, writer


def capture(args: argparse.Namespace) -> int:
    """`--capture`: the interface's source -> pcapng into the fifo until stopped."""
    if not args.fifo:
        sys.stderr.write("extcap capture needs --fifo PATH\n")
        return 2
    from dissector.live.base import stop_on_signals
    from dissector.live.rawcapture import LiveError
    from keys.keystore import KeystoreError

    stop = threading.Event()
    writer = None
    try:
        if args.extcap_interface == TAP_IF:
            source, writer = _tap_capture(args, stop)
        else:
            source = _serial_source(args, stop, args.fifo, None)
            source.open()
    except (LiveError, KeystoreError, OSError, ValueError) as exc:
        return _fail(args, str(exc))
    with stop_on_signals(stop, source.hurry):
        source.run()  # type: ignore[attr-defined]
    if writer is not None:
        writer.close()
    return 0


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Answer one extcap call."""
    if args.install is not None:
        out.write(f"installed {install(args.install or None)}\n")
        return 0
    if args.extcap_interfaces:
        out.write(interfaces_text())
        return 0
    interface = args.extcap_interface
    if interface is not None and interface not in INTERFACES:
        sys.stderr.write(f"unknown interface {interface!r} "
                         f"(only {', '.join(INTERFACES)})\n")
        return 1
    if args.extcap_dlts:
        out.write(dlts_text(interface or SERIAL_IF))
        return 0
    if args.extcap_config:
        out.write(config_text(interface or SERIAL_IF))
        return 0
    if args.capture:
        return capture(args)
    sys.stderr.write("nothing to do: give --extcap-interfaces, --extcap-dlts, --extcap-config, "
                     "--capture or --install\n")
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=LAUNCHER, description="Wireshark extcap: "
                                     + ", ".join(INTERFACES.values()))
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
