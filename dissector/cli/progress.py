"""Progress on standard error while `read` works, when standard error is a terminal (tqdm):
bytes of the capture read (where the file's size is known), records, APDUs a second."""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Any, BinaryIO


class Progress:
    """Updated with each record; silent (and free) when standard error is not a terminal."""

    def __init__(self, files: list[BinaryIO] | None, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.files = files or []
        self.records = 0
        self.started = time.monotonic()
        self.bar: Any = None
        if not self.enabled:
            return
        from tqdm import tqdm

        total = 0
        for f in self.files:
            try:
                total += os.fstat(f.fileno()).st_size
            except (OSError, ValueError):
                total = 0
                break
        size = shutil.get_terminal_size((80, 24))  # a terminal that gives no size: 80x24
        self.bar = tqdm(total=total or None, unit="B", unit_scale=True, file=sys.stderr,
                        desc="reading", leave=False, mininterval=0.5, ncols=size.columns,
                        nrows=size.lines)

    def record(self) -> None:
        self.records += 1
        if self.bar is None or self.records % 64:
            return
        self.bar.set_postfix_str(self._counts(), refresh=False)
        read = sum(_position(f) for f in self.files)
        self.bar.update(read - self.bar.n)

    def _counts(self) -> str:
        rate = self.records / max(time.monotonic() - self.started, 1e-6)
        return f"{self.records} records, {rate:.0f} APDUs/s"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(sum(_position(f) for f in self.files) - self.bar.n)
            self.bar.set_postfix_str(self._counts())  # shown, then cleared
            self.bar.close()


def _position(f: BinaryIO) -> int:
    try:
        return f.tell()
    except (OSError, ValueError):
        return 0
