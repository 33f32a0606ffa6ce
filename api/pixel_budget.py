"""A budget of memory for decoded pixels, shared by every request of the process.

Decoding is where one small upload becomes hundreds of MB (a 10 KB PNG of 8,900 x 8,900 decodes to 79 MB
even as 1-bit), so each decode first reserves its estimated peak (inference.images.decode_cost) and gives
it back when done. While the budget is spent, a decode waits up to a few seconds for others to finish;
then the request is turned away (503, retry later) instead of the server swapping or being killed. A
single decode larger than the whole budget could never run: it is refused at once.

The budget is per process, because memory is: all apps and requests of a process share one per size.
"""

from __future__ import annotations

import functools
import threading
import time
from contextlib import contextmanager
from typing import Iterator


class OverBudget(ValueError):
    """A decode needs more than the whole budget."""

    def __init__(self, needed: int, total: int) -> None:
        super().__init__(f"needs {needed:,} bytes; the whole budget is {total:,}")
        self.needed, self.total = needed, total


class BudgetBusy(RuntimeError):
    """The budget stayed spent for as long as the caller would wait."""

    def __init__(self, needed: int, waited_s: float) -> None:
        super().__init__(f"{needed:,} bytes were not free within {waited_s:g} s")
        self.needed, self.waited_s = needed, waited_s


class PixelBudget:
    """A counting semaphore of bytes. Thread-safe; not fair (a small decode may pass a waiting large one)."""

    def __init__(self, total_bytes: int) -> None:
        if total_bytes <= 0:
            raise ValueError(f"a decode budget must be positive, got {total_bytes} bytes")
        self.total = total_bytes
        self._used = 0
        self._freed = threading.Condition()

    @property
    def used(self) -> int:
        """Bytes reserved now."""
        with self._freed:
            return self._used

    @contextmanager
    def reserve(self, nbytes: int, wait_s: float) -> Iterator[None]:
        """Hold `nbytes` for the block (see acquire)."""
        self.acquire(nbytes, wait_s)
        try:
            yield
        finally:
            self.release(nbytes)

    def acquire(self, nbytes: int, wait_s: float) -> None:
        """Take `nbytes`, waiting up to `wait_s` seconds for them to be free, else BudgetBusy; OverBudget
        at once if they exceed the whole budget. Give them back with release()."""
        nbytes = max(0, nbytes)
        if nbytes > self.total:
            raise OverBudget(nbytes, self.total)
        deadline = time.monotonic() + wait_s
        with self._freed:
            while self._used + nbytes > self.total:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BudgetBusy(nbytes, wait_s)
                self._freed.wait(left)
            self._used += nbytes

    def release(self, nbytes: int) -> None:
        with self._freed:
            self._used -= max(0, nbytes)
            self._freed.notify_all()


@functools.cache
def shared_budget(total_bytes: int) -> PixelBudget:
    """The process's budget of this size, made on first use (no import-time state)."""
    return PixelBudget(total_bytes)
