#!/usr/bin/env python3
"""Install the Wireshark 4.4 of Debian 13 (trixie), tshark and dumpcap, beside the machine's own
Wireshark, so that `tests/test_wireshark.py` runs both (README, "Wireshark 4.2 and later").

    .ci/wireshark-current.py [DIR]   # default /opt/wireshark-4.4; prints DIR/usr/bin/tshark
                                     # (what the tests take from DLMS_TSHARK_CURRENT)

What it does, with the Python standard library, dpkg-deb, gpgv and patchelf:

1. reads trixie's signed release file (`InRelease`, checked by gpgv against this machine's
   Debian archive keyring), then `main/binary-amd64/Packages.xz` (its SHA256 as that file
   says);
2. takes `tshark` and what it depends on (Pre-Depends and Depends, the first alternative that
   names a package; debconf, which only the packages' maintainer scripts use, is left out, and
   those scripts are not run), libc6 included: trixie's programs need its glibc (2.41), newer
   than bookworm's;
3. downloads each .deb, checks its SHA256 against Packages, and unpacks them all into DIR
   (`dpkg-deb -x`: DIR/usr/bin, DIR/usr/lib/x86_64-linux-gnu, DIR/usr/share/wireshark ...);
4. points the programs Wireshark runs (DIR/usr/bin, DIR/.../wireshark/extcap) at trixie's
   dynamic loader and libraries (patchelf: the ELF interpreter and an RPATH inside DIR).

They then run as installed programs: Wireshark 4.4 finds its folders from the program's own
path (`tshark -G folders`: DIR/usr/share/wireshark, DIR/usr/lib/x86_64-linux-gnu/wireshark/
{plugins/4.4,extcap}), tshark finds dumpcap beside itself, no environment variable is needed,
and nothing of the machine's Wireshark in /usr is read. A program started as
`ld-linux-x86-64.so.2 --library-path ... tshark` would not do: Wireshark would take the loader's
folder for its own.

The work is done in DIR.partial and renamed to DIR at the end; a DIR that holds a working
install (its `.installed` file, written last) is left as it is (`--force` installs again).
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

MIRROR = "http://deb.debian.org/debian/"
SUITE = "trixie"
PACKAGES = "main/binary-amd64/Packages.xz"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
ROOT_PACKAGE = "tshark"
LEFT_OUT = {"debconf"}  # used only by maintainer scripts, which are not run
DEFAULT_DIR = Path("/opt/wireshark-4.4")
LIBDIR = "usr/lib/x86_64-linux-gnu"
LOADER = f"{LIBDIR}/ld-linux-x86-64.so.2"
PROGRAM_DIRS = ("usr/bin", f"{LIBDIR}/wireshark/extcap")
STAMP = ".installed"
TIMEOUT = 300


def log(message: str) -> None:
    print(f"wireshark-current: {message}", file=sys.stderr, flush=True)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
        return answer.read()


def verified_release() -> str:
    """The text of trixie's InRelease once gpgv has checked its signature."""
    with tempfile.TemporaryDirectory() as tmp:
        signed = Path(tmp) / "InRelease"
        signed.write_bytes(fetch(f"{MIRROR}dists/{SUITE}/InRelease"))
        done = subprocess.run(["gpgv", "--keyring", KEYRING, "--output", "-", str(signed)],
                              capture_output=True, check=False)
    if done.returncode != 0:
        sys.exit(f"wireshark-current: InRelease: bad or unknown signature:\n"
                 f"{done.stderr.decode(errors='replace')}")
    return done.stdout.decode()


def release_sha256(release: str, name: str) -> str:
    section = False
    for line in release.splitlines():
        if not line.startswith(" "):
            section = line.startswith("SHA256:")
            continue
        fields = line.split()
        if section and len(fields) == 3 and fields[2] == name:
            return fields[0]
    sys.exit(f"wireshark-current: {name} is not in {SUITE}'s InRelease")


def parse_packages(text: str) -> dict[str, dict[str, str]]:
    """Packages stanzas by package name (fields joined; continuation lines kept)."""
    found: dict[str, dict[str, str]] = {}
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line
            else:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" in fields:
            found[fields["Package"]] = fields
    return found


def closure(packages: dict[str, dict[str, str]], root: str) -> list[str]:
    """`root` and what it needs, by Pre-Depends and Depends (the first alternative that is a
    package, else one that provides it)."""
    provides: dict[str, str] = {}
    for name, fields in packages.items():
        for item in fields.get("Provides", "").split(","):
            provided = item.split("(")[0].strip()
            if provided:
                provides.setdefault(provided, name)
    wanted: list[str] = []
    todo = [root]
    while todo:
        name = todo.pop()
        if name in wanted or name in LEFT_OUT:
            continue
        wanted.append(name)
        fields = packages[name]
        for relation in ("Pre-Depends", "Depends"):
            for group in filter(None, (g.strip() for g in fields.get(relation, "").split(","))):
                names = [alt.split("(")[0].strip().split(":")[0] for alt in group.split("|")]
                pick = next((n for n in names if n in packages), None) or next(
                    (provides[n] for n in names if n in provides), None)
                if pick is None:
                    sys.exit(f"wireshark-current: {name}: cannot resolve {group!r}")
                todo.append(pick)
    return sorted(wanted)


def download(fields: dict[str, str], into: Path) -> Path:
    target = into / Path(fields["Filename"]).name
    data = fetch(MIRROR + fields["Filename"])
    if hashlib.sha256(data).hexdigest() != fields["SHA256"]:
        sys.exit(f"wireshark-current: {target.name}: SHA256 differs from Packages")
    target.write_bytes(data)
    return target


def is_elf_program(path: Path) -> bool:
    if not path.is_file() or path.is_symlink() or not os.access(path, os.X_OK):
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def patch(stage: Path, final: Path) -> int:
    """Give every program under PROGRAM_DIRS trixie's loader and libraries (final paths)."""
    count = 0
    for folder in PROGRAM_DIRS:
        for program in sorted((stage / folder).iterdir()):
            if is_elf_program(program):
                subprocess.run(["patchelf", "--set-interpreter", str(final / LOADER),
                                "--force-rpath", "--set-rpath", str(final / LIBDIR),
                                str(program)], check=True)
                count += 1
    return count


def working(directory: Path) -> str | None:
    """The first line of `tshark -v` of an install in `directory`, or None."""
    tshark = directory / "usr" / "bin" / "tshark"
    if not (directory / STAMP).is_file() or not tshark.is_file():
        return None
    done = subprocess.run([str(tshark), "-v"], capture_output=True, text=True, check=False,
                          timeout=TIMEOUT)
    return done.stdout.splitlines()[0] if done.returncode == 0 and done.stdout else None


def install(directory: Path) -> None:
    for tool, package in (("patchelf", "patchelf"), ("dpkg-deb", "dpkg"), ("gpgv", "gpgv")):
        if shutil.which(tool) is None:
            sys.exit(f"wireshark-current: {tool} is missing (apt-get install -y {package})")
    if directory.exists() and any(directory.iterdir()) and not (directory / STAMP).exists():
        sys.exit(f"wireshark-current: {directory} holds something else: give an empty or new "
                 "folder")
    parent = next(p for p in directory.parents if p.exists())
    if not os.access(parent, os.W_OK):
        sys.exit(f"wireshark-current: cannot write into {parent}: run as root, or give a "
                 "folder of yours")
    started = time.monotonic()
    release = verified_release()
    data = fetch(f"{MIRROR}dists/{SUITE}/{PACKAGES}")
    if hashlib.sha256(data).hexdigest() != release_sha256(release, PACKAGES):
        sys.exit(f"wireshark-current: {PACKAGES}: SHA256 differs from InRelease")
    packages = parse_packages(lzma.decompress(data).decode())
    names = closure(packages, ROOT_PACKAGE)
    size = sum(int(packages[n]["Size"]) for n in names)
    log(f"{ROOT_PACKAGE} {packages[ROOT_PACKAGE]['Version']} from {SUITE}: {len(names)} "
        f"packages, {size / 1e6:.1f} MB")
    stage = directory.with_name(directory.name + ".partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            deb = download(packages[name], Path(tmp))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(stage)], check=True)
            deb.unlink()
    log(f"downloaded and unpacked in {time.monotonic() - started:.0f} s")
    programs = patch(stage, directory)
    (stage / STAMP).write_text("".join(f"{n} {packages[n]['Version']}\n" for n in names))
    shutil.rmtree(directory, ignore_errors=True)
    stage.rename(directory)
    if working(directory) is None:
        sys.exit(f"wireshark-current: {directory}/usr/bin/tshark does not run")
    log(f"{programs} programs pointed at {directory / LOADER}; done in "
        f"{time.monotonic() - started:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR,
                        help=f"where to install (default {DEFAULT_DIR})")
    parser.add_argument("--force", action="store_true", help="install again")
    args = parser.parse_args()
    directory = args.dir.resolve()
    present = None if args.force else working(directory)
    if present:
        log(f"{present} already in {directory}")
    else:
        install(directory)
    print(directory / "usr" / "bin" / "tshark")
    return 0


if __name__ == "__main__":
    sys.exit(main())
