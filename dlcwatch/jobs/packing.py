"""How queued videos are packed into jobs: few jobs, each with about the same number of frames."""

from __future__ import annotations

import math
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")


def pack_by_frames(items: Sequence[T], per_job: int, frames: Callable[[T], int]) -> list[list[T]]:
    """Given items, the most per job and each item's frame count, return the jobs' item lists.

    As few jobs as `per_job` allows, filled longest first into the job with the fewest frames
    so far: jobs take about the same time, and the longest video does not wait at the end."""
    if not items:
        return []
    count = math.ceil(len(items) / per_job)
    jobs: list[list[T]] = [[] for _ in range(count)]
    totals = [0] * count
    for item in sorted(items, key=lambda item: -(frames(item) or 0)):
        open_jobs = [index for index in range(count) if len(jobs[index]) < per_job]
        target = min(open_jobs, key=lambda index: (totals[index], index))
        jobs[target].append(item)
        totals[target] += frames(item) or 0
    return jobs
