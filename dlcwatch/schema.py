"""The building blocks of the configuration schema, and the syntax of values read with it.

dlcwatch.config assembles the schema from these; a section that lives beside its code (such as
executors/slurm/schema.py) imports them from here, so no module imports config.py back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Option:
    """One leaf of the schema."""

    kind: str  # str | int | float | bool | path | destination | strings | choice | mode
    help: str
    default: Any = None
    example: Any = None
    required: bool = False
    choices: tuple = ()
    minimum: float | None = None
    secret: bool = False  # never echoed back in an error message


@dataclass(frozen=True)
class Section:
    help: str
    options: dict[str, "Option | Section | ListOf"]


@dataclass(frozen=True)
class ListOf:
    """A list of sections, e.g. several watch roots."""

    help: str
    item: Section
    min_items: int = 0
    example: list = field(default_factory=list)


def ssh_section(help: str) -> Section:
    """Given what the connection is for, return the section of how to log in over ssh."""
    return Section(help, {
        "identity_file": Option("path", "Private key to log in with (the daemon runs unattended, so no "
                                "passphrase); empty: ssh's default.", default=""),
        "port": Option("int", "ssh port.", default=22, minimum=1),
        "options": Option("strings", "Extra ssh -o options.", default=[], example=["ServerAliveInterval=30"]),
    })


REMOTE = re.compile(r"^(?P<host>(?:[^@/\s]+@)?[^@/:\s]+):(?P<path>/.*)$")


def parse_remote(root: str) -> tuple[str, str] | None:
    """Given an output root, return (host, path) if it names another machine, else None."""
    match = REMOTE.match(root)
    return (match["host"], match["path"].rstrip("/") or "/") if match else None
