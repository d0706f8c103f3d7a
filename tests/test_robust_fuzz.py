"""The bounded fuzz run of CI: both atheris targets (fuzz/fuzz_targets.py: `decode` and the
capture reader), seeded from pcaps/ and the shared corpus, for a fixed number of executions with
a fixed seed, side by side in two processes (< 30 s). Any exception, a slow input (libFuzzer
`-timeout`) or runaway memory (`-rss_limit_mb`) fails the test with the stack and the input.

The long run and its figures are in fuzz/README.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CORPUS, ROOT

if os.environ.get("CI"):
    import atheris  # noqa: F401 - CI installs the `test` extra: a missing atheris fails there
else:
    pytest.importorskip("atheris", reason="atheris is in the `test` extra (pip install -e"
                        " '.[test]')")

FUZZ = ROOT / "fuzz"
RUNS = {"decode": 900, "capture": 300}  # executions after the seeds
MAX_TIME = 18  # seconds per target (libFuzzer stops at whichever comes first)
#: Crashes found earlier and fixed (their reproductions are in test_robust_pipeline.py,
#: test_known_crash); none is tolerated any more.
KNOWN: dict[tuple[str, str], str] = {}


def start(target: str, tmp: Path) -> subprocess.Popen[str]:
    seeds, corpus = tmp / f"seeds-{target}", tmp / f"corpus-{target}"
    corpus.mkdir()
    subprocess.run([sys.executable, str(FUZZ / "seeds.py"), target, str(seeds)], check=True,
                   cwd=FUZZ, capture_output=True, timeout=120)
    assert len(list(seeds.iterdir())) > (20 if CORPUS.is_dir() else 0)
    count = len(list(seeds.iterdir()))
    return subprocess.Popen(
        [sys.executable, str(FUZZ / "fuzz_targets.py"), target, "-seed=1",
         f"-runs={count + RUNS[target]}", f"-max_total_time={MAX_TIME}", "-timeout=20",
         "-rss_limit_mb=2048", "-max_len=16384", f"-artifact_prefix={tmp}/{target}-",
         "-print_final_stats=1", str(corpus), str(seeds)],
        cwd=FUZZ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_bounded_fuzz_run(tmp_path: Path) -> None:
    procs = {t: start(t, tmp_path) for t in RUNS}
    logs = {t: p.communicate(timeout=MAX_TIME + 60)[0] for t, p in procs.items()}
    known = []
    for target, proc in procs.items():
        log = logs[target]
        if proc.returncode == 0:
            assert re.search(r"Done \d+ runs", log), log[-3000:]
            continue
        frames = re.findall(r'File "([^"]+)", line \d+, in (\w+)', log)
        place = (Path(frames[-1][0]).name, frames[-1][1]) if frames else None
        if place in KNOWN:
            known.append(f"{target}: {place} (see {KNOWN[place]})")
            continue
        pytest.fail(f"fuzz target {target} failed (status {proc.returncode}):\n{log[-6000:]}")
    assert not known, known
