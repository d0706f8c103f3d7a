"""`dlms-dissect wireshark --install`: the Lua plugin `dlmsd` and the extcap launcher, each
where the Wireshark found reads it.

The folders come from `tshark -G folders` of that Wireshark (run with this environment, so
HOME and, for a user who is not root, WIRESHARK_EXTCAP_DIR count as they will for it):

- the plugin goes to "Personal Lua Plugins" (`~/.local/lib/wireshark/plugins` on Linux);
- the launcher goes to "Personal Extcap path" (Wireshark 4.2 and later:
  `~/.local/lib/wireshark/extcap`), else to the one extcap folder of 4.0, "Extcap path": the
  global folder (`/usr/lib/x86_64-linux-gnu/wireshark/extcap` on Debian; root may write there),
  or WIRESHARK_EXTCAP_DIR when a user who is not root sets it (root's Wireshark ignores it).
  (4.4 names its global folder "Global Extcap path"; the variable replaces that one.)

`--dir` and `--extcap-dir` choose the folders instead; afterwards the command asks tshark
whether it now lists the protocol and the interfaces, and says so (and, as root, that
Wireshark 4.4 runs no personal Lua plugin for root).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, TextIO

from dissector.cli import extcap

PLUGIN = "dlmsd.lua"
PLUGIN_SOURCE = Path(__file__).resolve().parent.parent / "wireshark" / PLUGIN
PERSONAL_LUA = "Personal Lua Plugins"
PERSONAL_EXTCAP = "Personal Extcap path"
GLOBAL_EXTCAP = ("Extcap path", "Global Extcap path")  # 4.0, 4.4
TIMEOUT = 60


def add_parser(sub: Any) -> None:
    ws = sub.add_parser("wireshark", help="install the Lua plugin dlmsd and the extcap "
                                          "interfaces into Wireshark", epilog="""examples:
  dlms-dissect wireshark --install
  dlms-dissect wireshark --install --dir ~/.local/lib/wireshark/plugins
""", formatter_class=argparse.RawDescriptionHelpFormatter)
    ws.add_argument("--install", action="store_true", required=True,
                    help="install (the only action)")
    ws.add_argument("--dir", metavar="DIR",
                    help="Lua plugin folder (default: Wireshark's Personal Lua Plugins)")
    ws.add_argument("--extcap-dir", metavar="DIR",
                    help="extcap folder (default: Wireshark's personal extcap folder, else "
                         "the one it reads: see README)")
    ws.add_argument("--tshark", metavar="PATH",
                    help="the tshark of the Wireshark to install into (default: on PATH)")


def folders(tshark: str) -> dict[str, str]:
    """`tshark -G folders` as {label: path} (the first path of a label)."""
    done = subprocess.run([tshark, "-G", "folders"], capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)
    found: dict[str, str] = {}
    for line in done.stdout.splitlines():
        label, sep, path = line.partition(":")
        if sep and path.strip():
            found.setdefault(label.strip(), path.strip())
    return found


def version(tshark: str) -> str:
    done = subprocess.run([tshark, "-v"], capture_output=True, text=True, timeout=TIMEOUT,
                          check=False)
    first = done.stdout.splitlines()[0] if done.stdout else ""
    return first.strip() or "unknown version"


def _copy(source: Path, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    tmp = folder / f".{name}.tmp"
    shutil.copyfile(source, tmp)
    tmp.chmod(0o644)
    tmp.replace(target)
    return target


def _check(tshark: str, out: TextIO) -> None:
    """Ask the Wireshark whether it loads what was installed."""
    env = dict(os.environ)
    protocols = subprocess.run([tshark, "-G", "protocols"], capture_output=True, text=True,
                               timeout=TIMEOUT, check=False, env=env).stdout
    listed = any(line.split("\t")[2:3] == ["dlmsd"] for line in protocols.splitlines())
    out.write(f"  tshark -G protocols: dlmsd {'listed' if listed else 'NOT listed'}\n")
    if not listed and os.geteuid() == 0:
        out.write("    this Wireshark runs no personal Lua plugin as root (4.4 does not, Debian's "
                  "4.0 does): run Wireshark as a user who is not root, and this command as "
                  "that user\n")
    interfaces = subprocess.run([tshark, "-D"], capture_output=True, text=True,
                                timeout=TIMEOUT, check=False, env=env).stdout
    for value, display in extcap.INTERFACES.items():
        seen = f"{value} ({display})" in interfaces
        out.write(f"  tshark -D: {display} {'listed' if seen else 'NOT listed'}\n")


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Install the plugin and the launcher; print what was done."""
    tshark = args.tshark or shutil.which("tshark")
    found: dict[str, str] = {}
    if tshark:
        found = folders(tshark)
        out.write(f"Wireshark found: {version(tshark)} ({tshark})\n")
    else:
        out.write("no tshark on PATH: using the default folders of Wireshark 4.2 and later\n")
    lua_dir = Path(args.dir or found.get(PERSONAL_LUA)
                   or Path.home() / ".local" / "lib" / "wireshark" / "plugins")
    plugin = _copy(PLUGIN_SOURCE, lua_dir, PLUGIN)
    out.write(f"installed the Lua plugin (protocol dlmsd): {plugin}\n")
    extcap_dir = args.extcap_dir or found.get(PERSONAL_EXTCAP) or next(
        (found[label] for label in GLOBAL_EXTCAP if label in found), None)
    status = 0
    try:
        launcher = extcap.install(extcap_dir or None)
    except OSError as exc:
        out.write(f"could not write the extcap launcher into {extcap_dir}: {exc.strerror}\n"
                  "  this Wireshark has no personal extcap folder (4.0): run this command as "
                  "root, or set WIRESHARK_EXTCAP_DIR=DIR for Wireshark and this command (a "
                  "user who is not root; Wireshark then reads extcaps only from DIR), or give "
                  "--extcap-dir\n")
        status = 1
    else:
        shown = ", ".join(extcap.INTERFACES.values())
        out.write(f"installed the extcap launcher ({shown}): {launcher}\n")
    if tshark and not args.dir and not args.extcap_dir:
        _check(tshark, out)
    out.flush()
    return status
