"""The README's commands and Python examples work as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_python_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_main_job_command_runs() -> None:
    """The first command of README: dissect the shipped capture with its shipped keys."""
    command = re.search(r"```sh\n(python3 -m pip install -e \. && dlms-dissect read [^\n]+)\n",
                        README)
    assert command
    args = command.group(1).split("&& ", 1)[1].split()[1:]
    res = subprocess.run([sys.executable, "-m", "dissector", *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "ded-before-auth" in res.stdout and "deciphering-error answers frame 3" in res.stdout


def test_ci_runs_the_readme_test_command() -> None:
    command = re.search(r"```sh\n(python3 -m pip install -e '\.\[test\]'[^\n]+)\n", README)
    assert command
    ci = (ROOT / ".ci" / "run").read_text()
    for part in command.group(1).split(" && "):
        assert part.strip() in ci, part
