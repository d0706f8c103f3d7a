"""What the flow page is drawn from: an association's bounded summary, the colour class of an
arrow, and what the page reads of the writer that gathered them (`PageData`)."""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


def key_kind_of(item: dict[str, Any]) -> str:
    """The arrow's colour class: the JSON key_kind, `none` (plaintext), `unknown`."""
    sec = item.get("security")
    if sec is None:
        return "none"
    return str(sec.get("key_kind") or "unknown")


@dataclass
class Association:
    """What the index and the ladder need of one association; bounded whatever its size."""

    number: int
    link: str
    kind: str  # "aarq", "push" or "no-aarq"
    start: float
    meter_direction: str = "server->client"  # push: the direction its notifications came
    client_title: str | None = None
    server_title: str | None = None
    mechanism: str | None = None
    result: str | None = None
    apdus: int = 0
    link_frames: int = 0
    not_drawn: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    severities: dict[str, int] = field(default_factory=dict)
    first_issue: dict[str, Any] | None = None
    offsets: array = field(default_factory=lambda: array("q"))  # spool offset, length pairs
    requests: dict[int, tuple[int, int]] | None = field(default_factory=dict)

    @property
    def drawn(self) -> int:
        return len(self.offsets) // 2


class PageData(Protocol):
    """What `flow_page.write_page` reads of a `flow.FlowWriter`."""

    title: str
    associations: list[Association]
    max_associations: int
    max_arrows: int
    budget: int
    drawn: int
    left_out_associations: int
    left_out_apdus: int
    stray_link_frames: int

    def items(self, assoc: Association) -> Iterator[dict[str, Any]]:
        """The drawn arrows of an association, in order."""
