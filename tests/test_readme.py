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


def _usage_lines() -> dict[tuple[str, ...], str]:
    """The usage lines of the README's plain code blocks: command words -> the flags text."""
    out: dict[tuple[str, ...], str] = {}
    blocks: list[str] = []
    fence: str | None = None
    for line in README.splitlines():
        if line.startswith("```"):
            if fence is None:
                fence = line[3:].strip()
                blocks.append("")
            else:
                fence = None
            continue
        if fence == "":
            blocks[-1] += line + "\n"
    for block in blocks:
        command: tuple[str, ...] | None = None
        for line in block.splitlines():
            text = line.split("  #", 1)[0]
            if text.startswith("dlms-dissect "):
                first, *rest = text.split()[1:3]
                second = rest[0].split("|") if rest and first in ("sniff", "keys") else []
                commands = [(first, w) for w in second] or [(first,)]
                for one in commands:
                    out[one] = out.get(one, "") + " " + text
                command = commands[-1]
            elif command is not None and line.startswith(" "):
                out[command] += " " + text  # a continuation of the last command
            else:
                command = None
    return out


def test_usage_lines_match_the_real_help() -> None:
    """Every option a usage line of the README shows is one the command's --help lists."""
    usage = _usage_lines()
    assert {("read",), ("decode",), ("sniff", "serial"), ("sniff", "tcp")} <= set(usage)
    for command, text in usage.items():
        flags = set(re.findall(r"(?<![\w./-])(--?[A-Za-z][\w-]*)", text))
        helped = subprocess.run([sys.executable, "-m", "dissector", *command, "--help"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert helped.returncode == 0, (command, helped.stderr)
        missing = sorted(f for f in flags if f not in helped.stdout)
        assert not missing, (command, missing)


def test_every_option_has_help_text() -> None:
    """`--help` explains every option of every command (the parser, walked)."""
    import argparse

    from dissector.cli.main import build_parser

    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:  # argparse offers no public walk of its actions
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif action.option_strings and not action.help:
                missing.append(f"{' '.join(path)} {action.option_strings[0]}")

    walk(build_parser(), [])
    assert missing == []


def test_every_command_help_ends_with_examples() -> None:
    commands = [["read"], ["decode"], ["sniff", "serial"], ["sniff", "tcp"], ["keys", "check"],
                ["fields"], ["wireshark"], []]
    for command in commands:
        helped = subprocess.run([sys.executable, "-m", "dissector", *command, "--help"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        tail = helped.stdout.rsplit("examples:", 1)
        assert helped.returncode == 0 and len(tail) == 2, command
        assert all(line.strip().startswith(("dlms-dissect", "xclip")) or not line.strip()
                   or line.startswith("  dlms-dissect") for line in tail[1].splitlines()), command
