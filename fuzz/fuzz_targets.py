"""Coverage-guided fuzzing (atheris / libFuzzer) of `decode` and of the capture reader.

    python fuzz/fuzz_targets.py decode  [libFuzzer options] CORPUS_DIR [SEED_DIR...]
    python fuzz/fuzz_targets.py capture [libFuzzer options] CORPUS_DIR [SEED_DIR...]

Any exception is a crash; libFuzzer's `-timeout=` turns slow inputs into timeouts and
`-rss_limit_mb=` runaway memory into an out-of-memory report. See fuzz/README.md.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["layers", "keys", "dissector", "harness", "capgen"]):
    import harness

    # the targets import lazily: import what they use now, so it is instrumented
    import dissector.analysis.capture  # noqa: F401  (the capture readers, TCP, the fold)
    import keys.context  # noqa: F401
    import layers  # noqa: F401

TARGETS = {"decode": harness.decode_input, "capture": harness.capture_input}


def keep_going(target, artifacts: str):
    """FUZZ_KEEP_GOING=DIR: a crash is saved (once per place it happens) and fuzzing goes on,
    to find more bugs in one run; without it the first crash stops the run (CI, reproduction)."""
    import hashlib
    import os
    import traceback

    seen: set[tuple[str, str, int]] = set()
    os.makedirs(artifacts, exist_ok=True)

    def run(data: bytes) -> None:
        try:
            target(data)
        except Exception as exc:  # noqa: BLE001 - recorded, then fuzzing goes on
            frames = traceback.extract_tb(exc.__traceback__)
            own = [f for f in frames if "/site-packages/" not in f.filename] or frames
            place = (type(exc).__name__, own[-1].filename, own[-1].lineno)
            if place in seen:
                return
            seen.add(place)
            name = hashlib.sha1(data).hexdigest()
            with open(os.path.join(artifacts, f"crash-{name}"), "wb") as f:
                f.write(data)
            with open(os.path.join(artifacts, f"crash-{name}.txt"), "w") as f:
                f.write("".join(traceback.format_exception(exc)))
            print(f"\n=== crash {place} saved as crash-{name}", file=sys.stderr, flush=True)

    return run


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} decode|capture [libFuzzer options] [corpus dirs]")
    target = TARGETS[sys.argv.pop(1)]
    import os

    if os.environ.get("FUZZ_KEEP_GOING"):
        target = keep_going(target, os.environ["FUZZ_KEEP_GOING"])
    harness.keystore()  # load the keys once, outside the measured inputs
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
