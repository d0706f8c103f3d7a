"""Mutations of real APDUs, for the tests that hold a fast reader against the Packet path on
inputs near the real ones (`test_fast_decode`, `test_fast_acse`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hypothesis import strategies as st

BYTE = st.integers(0, 255)


@st.composite
def mutated(draw: st.DrawFn, seeds: Callable[[], Sequence[bytes]],
            values: Sequence[int]) -> bytes:
    """One of `seeds()` changed one to three times: a bit flipped, a byte set (to one of
    `values`, the lengths and tags the reader minds, or to any), the tail cut, bytes added at
    the end, a byte deleted or inserted."""
    choices = seeds()
    data = bytearray(choices[draw(st.integers(0, len(choices) - 1))])
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "set", "cut", "extend", "delete", "insert"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.one_of(st.sampled_from(values), BYTE))
        elif op == "cut":
            del data[at:]
        elif op == "extend":
            data += draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and data:
            del data[at]
        elif op == "insert":
            data.insert(at, draw(BYTE))
    return bytes(data)
