"""`read --jobs N`: how the parent shares the links with its workers (`parallel.Owners`). The
output never depends on it (tests/test_read_many.py and the --jobs tests compare with the serial
run); these tests hold the placement rules and the balance the share is computed for."""

from __future__ import annotations

import pytest

from dissector.analysis.parallel import Owners

US = 1e-6


def owners(workers: int, share: float) -> Owners:
    return Owners(workers, share, [0] * (workers + 1), {}, answered=[(0, 0.0)] * workers)


def test_a_link_keeps_its_owner_and_workers_get_the_fewest() -> None:
    o = owners(3, 0.0)
    first = [o.of(f"link {i}") for i in range(6)]
    assert first == [0, 1, 2, 0, 1, 2]  # none to the parent at share 0, the fewest first
    assert [o.of(f"link {i}") for i in range(6)] == first  # for good
    assert o.units == [4, 4, 4, 0] and o.counted == 12


def test_the_parent_takes_links_up_to_its_share() -> None:
    o = owners(1, 0.25)
    placed = [o.of(f"link {i}") for i in range(400)]
    assert placed.count(1) == 100  # a quarter of the units: the parent is index `workers`


def modelled(o: Owners, read: float, dissect: float, send: float, per_unit: float
             ) -> tuple[float, float]:
    """Per unit of the capture: the parent's CPU time and each worker's, at `o.share`."""
    f = o.share
    return read + f * dissect + (1 - f) * send, (1 - f) * per_unit / o.workers


@pytest.mark.parametrize(("workers", "read", "dissect", "send", "per_unit"), [
    (1, 20, 40, 5, 50),  # in the clear: reading weighs
    (1, 20, 120, 5, 130),  # ciphered
    (3, 20, 120, 5, 130),
])
def test_balance_gives_the_parent_as_much_work_as_a_worker(
        workers: int, read: float, dissect: float, send: float, per_unit: float) -> None:
    o = owners(workers, 0.3)
    total, own = 10_000, 1_000
    o.units = [(total - own) // workers] * workers + [own]
    o.dissecting, o.sent, o.sending = own * dissect * US, total - own, (total - own) * send * US
    o.answered = [((total - own) // workers, (total - own) // workers * per_unit * US)] * workers
    busy = total * read * US + o.dissecting + o.sending
    o.balance(busy)
    parent, worker = modelled(o, read, dissect, send, per_unit)
    assert 0 < o.share < Owners.MOST and parent == pytest.approx(worker)


def test_the_share_stays_within_bounds() -> None:
    o = owners(1, 0.3)
    o.units, o.dissecting, o.sent, o.sending = [9_000, 1_000], 1_000 * 40 * US, 9_000, 0.0
    o.answered = [(9_000, 9_000 * 45 * US)]
    o.balance(10_000 * 80 * US + o.dissecting)  # reading alone outweighs a worker's part
    assert o.share == 0.0
    o.balance(o.dissecting)  # nothing read: the parent could take more than half
    assert o.share == Owners.MOST
