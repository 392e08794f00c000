"""The life of a video and of a job: states and the transitions allowed between them.

This is the one place that says which state may follow which. It does no I/O; the store
checks every transition against these tables before it writes one.

A video:

    settling ──> queued ──> submitted ──> running ──> analyzed ──> delivering ──> done
       │  │         │           │            │                        │
       │  │         └───────────┴────────────┴──> queued (retry)      └──> analyzed (retry)
       │  └──> quarantined | duplicate | failed
       └──> missing              failed / quarantined / missing from any step of the job
                                 (failed from queued: it can never run there, e.g. larger
                                 than the cluster's scratch quota)

A multi-animal video in which no animal was found goes the normal way to done: it was analyzed,
and what DeepLabCut found (nothing to track) is delivered; its events say so.

A person's `dlcwatch retry` sends a failed, quarantined or missing video back to settling,
so it is probed and fingerprinted again before anything else happens to it.
"""

from __future__ import annotations

import enum

from dlcwatch.errors import TransitionError


class VideoState(str, enum.Enum):
    SETTLING = "settling"        # seen; waiting until size and mtime stop changing
    QUEUED = "queued"            # complete, readable, fingerprinted; waiting for a job
    SUBMITTED = "submitted"      # in a job the executor accepted; not started yet
    RUNNING = "running"          # its job is running
    ANALYZED = "analyzed"        # the worker produced verified keypoints; not delivered yet
    DELIVERING = "delivering"    # copying results to the output tree
    DONE = "done"                # delivered and verified
    FAILED = "failed"            # needs a person: retries used up, unreadable, delivery refused
    QUARANTINED = "quarantined"  # the file is not a usable video; never retried by itself
    DUPLICATE = "duplicate"      # same content as an earlier video; not analyzed again
    MISSING = "missing"          # the file vanished before it was analyzed

    def __str__(self) -> str:
        return self.value


V = VideoState

VIDEO_TRANSITIONS: dict[VideoState, frozenset[VideoState]] = {
    V.SETTLING: frozenset({V.QUEUED, V.QUARANTINED, V.DUPLICATE, V.FAILED, V.MISSING}),
    V.QUEUED: frozenset({V.SUBMITTED, V.MISSING, V.SETTLING, V.FAILED}),
    V.SUBMITTED: frozenset({V.RUNNING, V.ANALYZED, V.QUEUED, V.FAILED, V.QUARANTINED, V.MISSING}),
    V.RUNNING: frozenset({V.ANALYZED, V.QUEUED, V.FAILED, V.QUARANTINED, V.MISSING}),
    V.ANALYZED: frozenset({V.DELIVERING, V.QUEUED, V.FAILED}),
    V.DELIVERING: frozenset({V.DONE, V.ANALYZED, V.QUEUED, V.FAILED}),
    V.DONE: frozenset({V.SETTLING}),
    V.FAILED: frozenset({V.SETTLING}),
    V.QUARANTINED: frozenset({V.SETTLING}),
    V.DUPLICATE: frozenset({V.SETTLING}),
    V.MISSING: frozenset({V.SETTLING}),
}

# Nothing more happens to a video in these states until a person asks for it.
VIDEO_TERMINAL = frozenset({V.DONE, V.FAILED, V.QUARANTINED, V.DUPLICATE, V.MISSING})
# Still on its way: the pipeline is busy while any video is in one of these.
VIDEO_PENDING = frozenset(VideoState) - VIDEO_TERMINAL
# Ended without results, so a person must look: alerted, listed by status, logged as warnings.
VIDEO_NEEDS_A_PERSON = frozenset({V.FAILED, V.QUARANTINED, V.MISSING})
# A video in these states belongs to a job that an executor may be running.
VIDEO_IN_JOB = frozenset({V.SUBMITTED, V.RUNNING})
# States `dlcwatch retry` may send back to settling.
VIDEO_RETRYABLE = frozenset({V.FAILED, V.QUARANTINED, V.MISSING, V.DUPLICATE, V.DONE})


class JobState(str, enum.Enum):
    CREATED = "created"      # recorded, spec being written; not yet handed to the executor
    SUBMITTED = "submitted"  # the executor accepted it
    RUNNING = "running"
    FINISHED = "finished"    # ended and its result file was read
    FAILED = "failed"        # ended without a usable result
    CANCELLED = "cancelled"  # a person or the daemon cancelled it

    def __str__(self) -> str:
        return self.value


J = JobState

JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    J.CREATED: frozenset({J.SUBMITTED, J.FAILED}),
    J.SUBMITTED: frozenset({J.RUNNING, J.FINISHED, J.FAILED, J.CANCELLED}),
    J.RUNNING: frozenset({J.FINISHED, J.FAILED, J.CANCELLED}),
    J.FINISHED: frozenset(),
    J.FAILED: frozenset(),
    J.CANCELLED: frozenset(),
}

JOB_ACTIVE = frozenset({J.CREATED, J.SUBMITTED, J.RUNNING})


def check_video_transition(old: VideoState, new: VideoState) -> None:
    """Given a video's current and wanted state, return if allowed. Raise TransitionError."""
    if new not in VIDEO_TRANSITIONS[old]:
        raise TransitionError(f"video cannot go from {old} to {new}")


def check_job_transition(old: JobState, new: JobState) -> None:
    """Given a job's current and wanted state, return if allowed. Raise TransitionError."""
    if new not in JOB_TRANSITIONS[old]:
        raise TransitionError(f"job cannot go from {old} to {new}")
