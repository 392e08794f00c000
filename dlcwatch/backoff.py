"""How long to wait before trying again: the one policy for everything dlcwatch retries.

A failed video, a delivery to a destination that is away, a SLURM controller that does not answer,
a notification channel that refuses: each waits `first_s` after its first failure, twice as long
after each further one, and never longer than its cap (a setting of its own in the config).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    first_s: float   # the wait after the first failure
    max_s: float     # the longest wait, however many failures

    def delay(self, failures: int) -> float:
        """Given how many tries in a row failed (1 after the first), return the seconds to wait before the next."""
        if failures < 1:
            return 0.0
        return min(self.max_s, self.first_s * 2.0 ** min(failures - 1, 64))
