"""A small, bounded cache of preallocated work arrays keyed by batch size, for the unchecked hot paths."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BufferCache(Generic[T]):
    """At most `max_sizes` buffer sets, one per batch size; a new size beyond that evicts the oldest size.

    A learner and its actor use a few fixed sizes (the training batch B, the number of environments E, 1), so the
    cache never thrashes in practice, and it cannot grow however many sizes a caller tries.

    Args:
        make: `make(n)` allocates the buffer set for batch size `n`.
        max_sizes: how many batch sizes are kept at once.
    """

    def __init__(self, make: Callable[[int], T], max_sizes: int = 4) -> None:
        self._make = make
        self._max_sizes = max_sizes
        self._sets: dict[int, T] = {}

    def get(self, n: int) -> T:
        """The buffer set for batch size `n`, allocated on first use."""
        bufs = self._sets.get(n)
        if bufs is None:
            if len(self._sets) >= self._max_sizes:
                del self._sets[next(iter(self._sets))]  # the oldest size
            bufs = self._sets[n] = self._make(n)
        return bufs

    def __len__(self) -> int:
        return len(self._sets)
