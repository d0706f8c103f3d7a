"""Findings waiting to be shown (until the next PDU, or the end of the input), with memory
bounded however many come: past `MAX_HELD`, findings are counted per code, and one summary
finding per code says how many were folded and names the first frames."""

from __future__ import annotations

from dataclasses import dataclass, field

from layers.expert import Finding, Severity

MAX_HELD = 1000  # findings held as they are while they wait
FIRST_FRAMES = 5  # frames named by a summary finding
FOLDED = "expert.folded"  # the code of a summary finding
_RANK: dict[str, int] = {"note": 0, "warning": 1, "error": 2}


@dataclass(slots=True)
class _Folded:
    position: int  # where the first folded finding was met
    severity: Severity
    count: int = 0
    frames: list[int] = field(default_factory=list)


class FindingFold:
    """Findings in the order they were met, each with the position of its unit; `take()`
    gives them (in the form that rides on a record) and starts again."""

    def __init__(self, limit: int = MAX_HELD) -> None:
        self.limit = limit
        self._held: list[tuple[int, Finding]] = []
        self._folded: dict[str, _Folded] = {}

    def __bool__(self) -> bool:
        return bool(self._held or self._folded)

    def add(self, finding: Finding, position: int = 0) -> None:
        """Hold `finding` (met at unit `position`), or count it with its code's fold."""
        if len(self._held) < self.limit or finding.code == FOLDED:  # summaries stay whole
            self._held.append((position, finding))
            return
        fold = self._folded.get(finding.code)
        if fold is None:
            fold = self._folded[finding.code] = _Folded(position, finding.severity)
        fold.count += 1
        if _RANK.get(finding.severity, 0) > _RANK.get(fold.severity, 0):
            fold.severity = finding.severity
        if finding.frame and len(fold.frames) < FIRST_FRAMES:
            fold.frames.append(finding.frame)

    def take(self) -> list[tuple[int, Finding]]:
        """What is held (each as `Finding.about_record` gives it), then one summary per code
        folded; the fold is empty afterwards."""
        out = [(pos, f.about_record()) for pos, f in self._held]
        for code, fold in self._folded.items():
            frames = ""
            if fold.frames:
                more = ", ..." if fold.count > len(fold.frames) else ""
                frames = f", the first at frame(s) {', '.join(map(str, fold.frames))}{more}"
            out.append((fold.position, Finding(
                fold.severity, FOLDED,
                f"{fold.count} more {code} finding(s) folded into this one{frames}: more than "
                f"{self.limit} findings waited to be shown")))
        self._held, self._folded = [], {}
        return out
