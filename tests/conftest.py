"""Shared fixtures: the external corpus in ../shared (read in place, never copied)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DLMS_SHARED", ROOT.parent / "shared"))
CORPUS = SHARED / "corpus"


def require(tool: str, package: str, how: str | None = None) -> str:
    """The path of a system tool the test runs (a name on PATH, or a path); a user's machine
    without it skips, CI (env CI set, where `.ci/run` installs it) fails. `how` says how to
    get it where apt-get cannot."""
    path = shutil.which(tool)
    if path is None:
        unavailable(f"{tool} is missing ({how or f'apt-get install -y {package}'}; "
                    ".ci/run installs it)")
    return path


def unavailable(message: str) -> NoReturn:
    """What a test needs is not on this machine: skip on a user's machine, fail in CI."""
    (pytest.fail if os.environ.get("CI") else pytest.skip)(message)
    raise AssertionError(message)  # not reached: both raise


def corpus_path(*parts: str) -> Path:
    """Path inside the shared corpus; skips the test, with the reason, where it is absent.

    CI always has the corpus (``.ci/run`` fails when it is missing), so this skip only
    happens in a user's fresh clone without ``../shared``.
    """
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared corpus not found at {path} (set DLMS_SHARED)")
    return path


@pytest.fixture(scope="session")
def manifest() -> dict:
    return json.loads(corpus_path("manifest.json").read_text())


@pytest.fixture(scope="session")
def vectors() -> list[dict]:
    data = json.loads(corpus_path("vectors.json").read_text())
    return data["vectors"] if isinstance(data, dict) else data
