"""On a terminal (a pseudo-terminal pair, as a person runs it) `read` shows progress on stderr
and colours the severities; through pipes, neither. `--color` decides when asked."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = ["read", str(ROOT / "pcaps" / "seed-case.pcap"), "--keys",
        str(ROOT / "pcaps" / "seed-case.keys.toml")]
ESC = b"\x1b["


def _on_terminal(args: list[str]) -> bytes:
    """What the command writes to its terminal (stdout and stderr both on the pty)."""
    main, sub = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    proc = subprocess.Popen([sys.executable, "-m", "dissector", *args], stdin=sub, stdout=sub,
                            stderr=sub, cwd=ROOT, env=env)
    os.close(sub)
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(main)
    assert proc.returncode == 0, seen[-500:]
    return seen


def test_terminal_gets_colours_and_progress() -> None:
    seen = _on_terminal(SEED)
    assert b"\x1b[33mwarning\x1b[0m: assoc.ded-before-auth" in seen  # Wireshark's yellow
    assert b"\x1b[36mnote\x1b[0m: assoc.hls-verified" in seen  # and cyan
    assert b"reading" in seen and b"records" in seen  # tqdm's line on stderr


def test_pipes_get_neither() -> None:
    proc = subprocess.run([sys.executable, "-m", "dissector", *SEED], capture_output=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0 and ESC not in proc.stdout and ESC not in proc.stderr
    assert b"reading" not in proc.stderr
    forced = subprocess.run([sys.executable, "-m", "dissector", *SEED, "--color", "always"],
                            capture_output=True, cwd=ROOT, timeout=60)
    assert b"\x1b[33mwarning\x1b[0m" in forced.stdout


def test_color_never_on_a_terminal() -> None:
    seen = _on_terminal([*SEED, "--color", "never"])
    assert b"\x1b[33m" not in seen and b"warning: assoc.ded-before-auth" in seen
