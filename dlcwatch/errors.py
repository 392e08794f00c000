"""Every error dlcwatch raises on purpose, under one base; the message is for a person.

Catch DlcwatchError for anything dlcwatch reported, or one class for one cause. Both the daemon
and the worker import this module, so it needs the standard library only.
"""

from __future__ import annotations


class DlcwatchError(Exception):
    """Something dlcwatch detected and explains in its message."""


class ConfigError(DlcwatchError, ValueError):
    """The configuration is invalid; `problems` lists every problem found."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        listed = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the configuration:\n{listed}")


class StoreError(DlcwatchError):
    """The state database cannot be opened or is not ours."""


class TransitionError(DlcwatchError):
    """A caller asked for a transition the state machine does not allow."""


class TransferError(DlcwatchError, OSError):
    """A copy or a command on another machine failed or did not verify (an I/O failure, hence OSError)."""


class SshUnreachable(TransferError):
    """ssh itself failed (host down, login refused): nothing ran on the far side."""


class ProbeError(DlcwatchError):
    """ffprobe could not read the file as a video. The message says why, for a person."""


class ProbeUnavailableError(DlcwatchError):
    """ffprobe itself is missing or hung: nothing is known about the file."""


class BadVideo(DlcwatchError):
    """The worker found a video nobody can analyze: it is quarantined, not retried."""


class EngineMissing(DlcwatchError):
    """The job's environment lacks what the model's engine needs; the message says how to make one."""


class BehaviorError(DlcwatchError):
    """A behavior-labelling problem the user can fix (bad input file, bad option, unreadable model).

    The command line prints its message without a traceback."""


class OutputsGone(DlcwatchError):
    """The job's outputs are no longer in staging: the video must be analyzed again."""


class ExecutorError(DlcwatchError):
    """The executor refused or could not be reached; the message says why, for a person."""


class SubmitLimitReached(ExecutorError):
    """The scheduler refused for an account's submit limit: nothing is wrong with the job itself."""


class NotifyError(DlcwatchError):
    """A channel could not deliver a message. `reason` never contains a secret."""

    def __init__(self, channel: str, reason: str):
        super().__init__(f"{channel}: {reason}")
        self.channel = channel
        self.reason = reason


class DatabaseUnavailable(StoreError):
    """The state database cannot be read now; the message says why and what to do.

    `kind` is one of: missing, locked, schema, unreadable."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
