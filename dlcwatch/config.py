"""The configuration: one YAML file, described by one schema.

The schema below is the single description of every option: validation walks it and collects
every problem with its key path, and `dlcwatch config example` prints the sample file from it,
so the documentation of an option cannot drift from the code that reads it.
"""

from __future__ import annotations

import difflib
import grp
import os
import pwd
import shutil
from pathlib import Path
from typing import Any

import yaml

from dlcwatch.errors import ConfigError
from dlcwatch.executors.cluster_schema import CLUSTER_KINDS
from dlcwatch.executors.pbs.schema import PBS_SECTION
from dlcwatch.executors.sge.schema import SGE_SECTION
from dlcwatch.executors.slurm.schema import SLURM_SECTION
from dlcwatch.schema import ListOf, Option, Section, parse_remote, ssh_section

CONFIG_ENV = "DLCWATCH_CONFIG"


VIDEO_PATTERNS = ["*.mp4", "*.avi", "*.mov", "*.mkv", "*.mpg", "*.mpeg", "*.m4v", "*.wmv"]

SCHEMA = Section("dlcwatch configuration", {
    "watch": Section("Where new videos appear and when a file counts as completely written.", {
        "roots": ListOf(
            "Folders to watch (local disk, NFS or SMB mounts).",
            Section("One watched folder.", {
                "path": Option("path", "Folder to watch.", required=True, example="/data/behavior/raw"),
                "include": Option("strings", "File name patterns to pick up; the extension is matched "
                                  "case-insensitively, so *.mp4 also matches .MP4.", default=VIDEO_PATTERNS),
                "exclude": Option("strings", "Patterns (on the path relative to the folder) to ignore.",
                                  default=[], example=["calibration/*"]),
                "recursive": Option("bool", "Also watch sub-folders.", default=True),
                "polling": Option("choice", "How to notice changes: 'auto' polls on network file systems "
                                  "(NFS, SMB/CIFS, sshfs), where inotify gives no events, and uses inotify "
                                  "elsewhere; 'on' always polls; 'off' never does.",
                                  default="auto", choices=("auto", "on", "off")),
                "polling_interval_s": Option("float", "Seconds between polls when polling.", default=10.0,
                                             minimum=0.1),
            }),
            min_items=1,
            example=[{"path": "/data/behavior/raw"}],
        ),
        "settle_s": Option("float", "A file is picked up only after its size and modification time have "
                           "not changed for this many seconds.", default=30.0, minimum=0),
        "rescan_interval_s": Option("float", "Seconds between full rescans of every root; file-system "
                                    "events are only a hint, the rescan is the truth.", default=60.0, minimum=0.1),
        "full_rescan_interval_s": Option(
            "float", "Seconds between full rescans, which list every folder and stat every file. The "
            "scans in between list only folders whose modification time changed (adding, removing or "
            "renaming a file changes it), so they cost what changed, not what exists; a full rescan "
            "catches what folder times miss: a file rewritten in place, and network file systems whose "
            "client caches folder times (NFS: acdirmax) or that keep none (some FUSE mounts: s3fs, "
            "rclone, gcsfuse).", default=3600.0, minimum=1.0),
        "reads_per_filesystem": Option(
            "int", "How many videos are read (probed and hashed) at once on one file system, outside "
            "the main loop. Two readers are faster than eight on one NFS server.", default=2, minimum=1),
        "read_stall_s": Option(
            "float", "Give up reading a video (and try again this much later) when the read makes no "
            "progress for this many seconds, e.g. on a hung NFS mount. There is no limit on how long "
            "a read that makes progress may take.", default=300.0, minimum=1.0),
    }),
    "state": Section("The state database: the one record of every video and job.", {
        "database": Option("path", "SQLite file (created if missing). Relative paths are relative to "
                           "this config file.", default="state/dlcwatch.db", example="/var/lib/dlcwatch/state.db"),
    }),
    "output": Section("Where results are delivered.", {
        "root": Option("destination", "Results for <watch root>/<rel>/<name>.<ext> land in "
                       "<root>/<rel>/<name>/. A local or mounted folder, or user@host:/path for another "
                       "machine (rsync over ssh, verified on arrival).",
                       required=True, example="/data/behavior/dlc-results"),
        "ssh": ssh_section("How to reach the output machine when root is user@host:/path."),
        "after_delivery": Option("choice", "What to do with the source video once its results are "
                                 "delivered and verified: keep it, delete it, or move it under move_to "
                                 "(same relative path). A video whose content changed since it was "
                                 "fingerprinted is always kept.", default="keep", choices=("keep", "delete", "move")),
        "move_to": Option("path", "Folder for after_delivery: move.", default="", example="/data/behavior/analyzed"),
        "retry_max_s": Option("float", "While the destination cannot be reached or is full, results wait in "
                              "staging and delivery is tried again after executor.retry_backoff_s, doubling up "
                              "to this many seconds.", default=3600.0, minimum=0),
        "group": Option("str", "Group that delivered results and their folders belong to (the service user "
                        "must be a member); folders are made setgid so files added later inherit it. Empty: "
                        "the service user's group. E.g. smithlab.", default=""),
        "file_mode": Option("mode", "Mode of delivered files, in octal. Empty: 0666 less the service's umask "
                            "(0640 under the unit's UMask=0027). Never writable by others.", default="",
                            example="0640"),
        "dir_mode": Option("mode", "Mode of the result folders dlcwatch creates, in octal. Empty: 0777 less "
                           "the umask (0750 under UMask=0027); setgid is added when group is set.", default="",
                           example="0750"),
    }),
    "staging": Section("Scratch space for jobs: specs, logs and outputs before delivery.", {
        "dir": Option("path", "Scratch folder (created if missing).", default="staging",
                      example="/scratch/dlcwatch"),
        "copy_videos": Option("bool", "Copy each video into scratch before analysis instead of linking "
                              "to it (useful when scratch is a fast local disk).", default=False),
        "min_free_gb": Option("float", "Pause intake and new jobs while scratch has less free space than "
                              "this (GB); results waiting for delivery are kept.", default=5.0, minimum=0),
    }),
    "model": Section("The DeepLabCut model that analyzes every video.", {
        "config": Option("path", "The DeepLabCut project's config.yaml. It is only read: jobs work on "
                         "a private copy, so a moved project or a read-only share works.",
                         required=True, example="/data/models/openfield-lab-2026-01-01/config.yaml"),
        "shuffle": Option("int", "Training shuffle of the model to use.", default=1, minimum=1),
        "trainingsetindex": Option("int", "Index into the project's TrainingFraction list.", default=0,
                                   minimum=0),
        "batch_size": Option("int", "Frames per inference batch (larger is faster on a GPU, needs more "
                             "memory).", default=8, minimum=1),
        "device": Option("str", "'auto' uses a GPU when the job has one, else the CPU; or e.g. 'cpu', "
                         "'cuda:0'.", default="auto"),
        "labeled_video": Option("choice", "A labeled video to check the tracking by eye, made in the job with "
                                "DeepLabCut's create_labeled_video: 'clip' (labeled_clip_s from the middle of the "
                                "video, cheap enough for every video), 'full' (the whole video) or 'off'. One that "
                                "fails costs only itself.", default="clip", choices=("off", "clip", "full")),
        "labeled_clip_s": Option("float", "Length of the labeled clip, seconds.", default=10.0, minimum=1),
        "multi_animal": Section("Multi-animal projects only (ignored for single-animal ones).", {
            "auto_track": Option("bool", "Track the animals (DeepLabCut's auto_track); false delivers the "
                                 "untracked detections table and pickles only.", default=True),
            "tracker": Option("choice", "Tracker: 'project' uses the project's default_track_method (DeepLabCut's "
                              "default: ellipse).", default="project",
                              choices=("project", "ellipse", "box", "skeleton")),
            "animals": Option("int", "Number of animals to track (n_tracks); 0: one per individual in the "
                              "project.", default=0, minimum=0),
        }),
        "filter": Section("Optional filtering of the predictions (deeplabcut.filterpredictions).", {
            "enabled": Option("bool", "Also deliver filtered keypoints.", default=False),
            "type": Option("choice", "Filter type.", default="median", choices=("median", "arima", "spline")),
            "window_length": Option("int", "Window length in frames (odd).", default=5, minimum=1),
        }),
    }),
    "behavior": Section("Behavior labels for every frame (B-SOiD features + classifier), computed in the "
                        "job right after the keypoints are verified.", {
        "model": Option("path", "A model made by `dlcwatch behavior train` (or imported from B-SOiD with "
                        "`dlcwatch behavior import-bsoid`); empty: no behavior labels.", default="",
                        example="/data/models/openfield-behavior.joblib"),
    }),
    "executor": Section("Where jobs run.", {
        "kind": Option("choice", "'local' runs jobs as processes on this machine; 'slurm' submits them to "
                       "a SLURM cluster with sbatch; 'sge' to a Grid Engine cluster with qsub; 'pbs' to a PBS "
                       "(OpenPBS, PBS Professional) cluster with qsub.", default="local",
                       choices=("local", *CLUSTER_KINDS)),
        "videos_per_job": Option("int", "Videos analyzed by one job, so the model loads once for "
                                 "several videos.", default=4, minimum=1),
        "gather_s": Option("float", "While more videos are still being checked (a batch of recordings "
                           "copied in at once), wait up to this long for them before submitting, so that "
                           "videos arriving together share full jobs and one job array.", default=60.0,
                           minimum=0),
        "max_attempts": Option("int", "Attempts per video before it is marked failed for a person to "
                               "look at.", default=3, minimum=1),
        "retry_backoff_s": Option("float", "Wait before a failed video is tried again; doubles with "
                                  "each attempt. Deliveries to a destination that is away wait the same, "
                                  "doubling too.", default=60.0, minimum=0),
        "retry_backoff_max_s": Option("float", "The longest wait before a failed video is tried again.",
                                      default=3600.0, minimum=0),
        "local": Section("The local executor.", {
            "max_parallel": Option("int", "Jobs running at once.", default=1, minimum=1),
            "python": Option("path", "Python interpreter of the environment that has DeepLabCut; empty "
                             "means the daemon's own (e.g. /opt/dlc-env/bin/python).", default=""),
            "time_limit_s": Option("float", "Kill a job that runs longer than this (0: no limit).",
                                   default=0.0, minimum=0),
        }),
        "slurm": SLURM_SECTION,
        "sge": SGE_SECTION,
        "pbs": PBS_SECTION,
    }),
    "notify": Section("Messages to people when videos are done or need attention. Both channels are "
                      "optional; a channel that fails is retried later and never stops the pipeline.", {
        "batch_window_s": Option("float", "One 'done' message covers every video finished while work was "
                                 "in flight; a message goes out at the latest this long after the first "
                                 "unreported video finished.", default=3600.0, minimum=0),
        "retry_interval_s": Option("float", "Wait before sending a failed notification again; doubles "
                                   "with each try, up to retry_max_s.", default=300.0, minimum=1),
        "retry_max_s": Option("float", "The longest wait before a failed notification is sent again.",
                              default=21600.0, minimum=1),
        "daily_digest_at": Option("str", "Local time (HH:MM) of a daily summary of the last 24 hours; "
                                  "empty: none.", default="", example="08:30"),
        "alert_after_s": Option("float", "Alert when a problem that stops the pipeline (destination "
                                "unreachable, scratch full, watch root gone) lasts this long.", default=1800.0,
                                minimum=0),
        "email": Section("Email through an SMTP server.", {
            "enabled": Option("bool", "Send email.", default=False),
            "host": Option("str", "SMTP server.", default="", example="smtp.example.edu"),
            "port": Option("int", "SMTP port (587 for STARTTLS, 465 for SSL).", default=587, minimum=1),
            "security": Option("choice", "Connection security.", default="starttls",
                               choices=("starttls", "ssl", "none")),
            "username": Option("str", "Login name; empty for no login.", default=""),
            "password": Option("str", "Login password; better left empty and given in the environment "
                               "variable named by password_env.", default="", secret=True),
            "password_env": Option("str", "Environment variable holding the password.",
                                   default="DLCWATCH_SMTP_PASSWORD"),
            "sender": Option("str", "From address.", default="", example="dlcwatch@lab.example.edu"),
            "recipients": Option("strings", "To addresses.", default=[], example=["pi@lab.example.edu"]),
            "timeout_s": Option("float", "Give up on the server after this long.", default=20.0, minimum=1),
        }),
        "slack": Section("Slack through an incoming webhook.", {
            "enabled": Option("bool", "Post to Slack.", default=False),
            "webhook_url": Option("str", "Incoming webhook URL; it is a secret, better given in the "
                                  "environment variable named by webhook_url_env.", default="", secret=True),
            "webhook_url_env": Option("str", "Environment variable holding the webhook URL.",
                                      default="DLCWATCH_SLACK_WEBHOOK"),
            "timeout_s": Option("float", "Give up on Slack after this long.", default=10.0, minimum=1),
        }),
    }),
    "daemon": Section("The main loop.", {
        "tick_s": Option("float", "Seconds between cycles of scan, submit, poll and deliver.",
                         default=5.0, minimum=0.05),
        "log_level": Option("choice", "Log verbosity.", default="info",
                            choices=("debug", "info", "warning", "error")),
    }),
    "web": Section("The read-only web page (`dlcwatch web`, a process of its own beside the daemon).", {
        "listen": Option("str", "Address and port to serve on (HOST:PORT). Any address but loopback "
                         "(127.0.0.1, ::1, localhost) needs a token; or keep 127.0.0.1 and put the page "
                         "behind the lab's reverse proxy.", default="127.0.0.1:8080"),
        "token": Option("str", "Shared secret (at least 16 characters) a browser gives once on the "
                        "page's login form; better left empty and given in the environment variable "
                        "named by token_env.", default="", secret=True),
        "token_env": Option("str", "Environment variable holding the token.", default="DLCWATCH_WEB_TOKEN"),
        "refresh_s": Option("float", "Pages reload themselves this often (seconds).", default=5.0, minimum=1),
    }),
})


class Node(dict):
    """A validated config section: read values as attributes (cfg.watch.settle_s)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def find_config_path(cli_path: str | None) -> Path:
    """Given --config (or None), return the config path, from DLCWATCH_CONFIG if not given."""
    path = cli_path or os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError("dlcwatch", [f"no configuration: pass --config PATH or set {CONFIG_ENV}"])
    return Path(path).expanduser()


def load_config(path: str | Path, *, check_paths: bool = True) -> Node:
    """Given a YAML file, return the validated config with defaults applied. Raise ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(str(path), [f"cannot read the file: {error.strerror or error}"]) from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(str(path), [f"not valid YAML: {error}"]) from error
    return validate(data if data is not None else {}, base_dir=path.absolute().parent, source=str(path),
                    check_paths=check_paths)


def validate(data: Any, *, base_dir: Path, source: str = "config", check_paths: bool = True) -> Node:
    """Given parsed YAML, return the config with defaults applied. Raise ConfigError listing all problems."""
    problems: list[str] = []
    config = _validate_section(SCHEMA, data, "", base_dir, problems)
    if check_paths:
        _check_paths(config, problems)
        _check_output_group(config, problems)
    _check_notify(config, problems)
    _check_cluster(config, problems)
    if problems:
        raise ConfigError(source, problems)
    return config


def _validate_section(section: Section, data: Any, prefix: str, base_dir: Path, problems: list[str]) -> Node:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{prefix or 'top level'}: expected a mapping of keys, got {_describe(data)}")
        data = {}
    for key in data:
        if key not in section.options:
            hint = difflib.get_close_matches(str(key), section.options, n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else f"; known keys: {', '.join(section.options)}"
            problems.append(f"{prefix}{key}: unknown key{suggestion}")
    result = Node()
    for key, spec in section.options.items():
        where = f"{prefix}{key}"
        value = data.get(key)
        if isinstance(spec, Section):
            result[key] = _validate_section(spec, value, where + ".", base_dir, problems)
        elif isinstance(spec, ListOf):
            items = value if value is not None else []
            if not isinstance(items, list):
                problems.append(f"{where}: expected a list, got {_describe(items)}")
                items = []
            if len(items) < spec.min_items:
                problems.append(f"{where}: needs at least {spec.min_items} entry (e.g. "
                                f"{yaml.safe_dump(spec.example, default_flow_style=True).strip()})")
            result[key] = [_validate_section(spec.item, item, f"{where}[{index}].", base_dir, problems)
                           for index, item in enumerate(items)]
        else:
            result[key] = _validate_option(spec, value, key in data, where, base_dir, problems)
    return result


def _validate_option(spec: Option, value: Any, given: bool, where: str, base_dir: Path,
                     problems: list[str]) -> Any:
    if spec.secret and given and value is not None and not isinstance(value, str):
        problems.append(f"{where}: expected a string (value not shown: it is a secret)")
        return spec.default
    if not given or value is None:
        if spec.required:
            example = f" (e.g. {spec.example})" if spec.example is not None else ""
            problems.append(f"{where}: required: {spec.help}{example}")
            return None
        value = spec.default
        if spec.kind == "mode":
            return None
        if spec.kind == "path" and value:
            return str((base_dir / Path(value).expanduser()).absolute())
        return list(value) if isinstance(value, list) else value
    kind = spec.kind
    if kind == "bool":
        if not isinstance(value, bool):
            problems.append(f"{where}: expected true or false, got {_describe(value)}")
        return value
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind == "int" and not isinstance(value, int)):
            problems.append(f"{where}: expected {'a whole number' if kind == 'int' else 'a number'}, "
                            f"got {_describe(value)}")
            return spec.default
        if spec.minimum is not None and value < spec.minimum:
            problems.append(f"{where}: must be at least {spec.minimum}, got {value}")
        return float(value) if kind == "float" else value
    if kind == "mode":
        return _validate_mode(value, where, problems)
    if kind == "strings":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            problems.append(f"{where}: expected a list of strings, got {_describe(value)}")
            return list(spec.default)
        return value
    if not isinstance(value, str):
        problems.append(f"{where}: expected a string, got {_describe(value)}")
        return spec.default
    if kind == "choice" and value not in spec.choices:
        problems.append(f"{where}: must be one of {', '.join(spec.choices)}; got '{value}'")
        return spec.default
    if kind in ("path", "destination") and value:
        if kind == "destination" and parse_remote(value):
            return value
        return str((base_dir / Path(value).expanduser()).absolute())
    return value


def _validate_mode(value: Any, where: str, problems: list[str]) -> int | None:
    """Given a file mode as written in YAML ('0640', or 0640 which YAML reads as octal), return it or None."""
    if value in ("", None):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and value.strip().isdigit() and set(value.strip()) <= set("01234567"):
        mode = int(value.strip(), 8)
    else:
        problems.append(f"{where}: expected an octal mode such as '0640' (quoted), got {_describe(value)}")
        return None
    folder = where.endswith("dir_mode")
    needed = 0o700 if folder else 0o600
    if mode & ~0o7777 or mode & needed != needed:
        problems.append(f"{where}: {mode:04o} must let the service itself {'enter and ' if folder else ''}read and "
                        f"write what it delivers (at least {needed:04o})")
    if mode & 0o002:
        problems.append(f"{where}: {mode:04o} would let anybody on the machine change the results; use "
                        f"{mode & ~0o002:04o} (the group can be given write access instead)")
    return mode


def _check_output_group(config: Node, problems: list[str]) -> None:
    """A local output group must exist here and have the service user as a member (a remote one is checked there)."""
    group = config.output.group
    if not isinstance(group, str) or not group or parse_remote(str(config.output.root)):
        return
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        problems.append(f"output.group: there is no group '{group}' on this machine")
        return
    if os.geteuid() != 0 and gid not in os.getgroups():
        user = pwd.getpwuid(os.geteuid()).pw_name
        problems.append(f"output.group: {user} is not a member of '{group}', so it cannot give results to it: "
                        f"`sudo usermod -aG {group} {user}`, then restart dlcwatch")


# For each cluster executor: a client command to look for, what its tools are called, where they run.
CLIENT_TOOLS = {
    "slurm": ("sbatch", "SLURM client tools (sbatch, squeue)", "login node"),
    "sge": ("qsub", "Grid Engine client tools (qsub, qstat, qacct)", "submit host"),
    "pbs": ("qsub", "PBS client tools (qsub, qstat, qselect, qdel)", "login node"),
}


def _check_paths(config: Node, problems: list[str]) -> None:
    """Check what must exist before the daemon starts, so it fails at once and clearly."""
    for index, root in enumerate(config.watch.roots):
        if isinstance(root.path, str) and not Path(root.path).is_dir():
            problems.append(f"watch.roots[{index}].path: folder {root.path} does not exist "
                            "(is the share mounted?)")
    model_config = config.model.config
    if isinstance(model_config, str) and not Path(model_config).is_file():
        problems.append(f"model.config: {model_config} does not exist; point it at the DeepLabCut "
                        "project's config.yaml")
    if config.output.after_delivery == "move" and not config.output.move_to:
        problems.append("output.move_to: required when output.after_delivery is 'move'")
    behavior_model = config.behavior.model
    if isinstance(behavior_model, str) and behavior_model and not Path(behavior_model).is_file():
        problems.append(f"behavior.model: {behavior_model} does not exist; train one with "
                        "`dlcwatch behavior train` or leave it empty")
    kind = config.executor.kind
    if kind in CLIENT_TOOLS and not config.executor[kind].host:
        first, names, where = CLIENT_TOOLS[kind]
        folder = config.executor[kind].get("commands_dir", "")
        if shutil.which(str(Path(folder) / first) if folder else first) is None:
            problems.append(f"executor.kind: {kind!r} needs the {names} on this machine"
                            + (f" (in executor.{kind}.commands_dir {folder})" if folder else "")
                            + f", or executor.{kind}.host to run them on the cluster's {where} over ssh")
    if shutil.which("ffprobe") is None:
        problems.append("ffprobe is not installed: dlcwatch checks every video with it. Install ffmpeg "
                        "(`sudo apt-get install ffmpeg` on Debian/Ubuntu)")
    python = config.executor.local.python
    if isinstance(python, str) and python and not os.access(python, os.X_OK):
        problems.append(f"executor.local.python: {python} is not an executable")


def _check_cluster(config: Node, problems: list[str]) -> None:
    for kind in CLUSTER_KINDS:
        settings = config.executor[kind]
        scratch, host = settings.scratch, settings.host
        if isinstance(host, str) and host and (host.startswith("-") or any(c.isspace() for c in host)):
            problems.append(f"executor.{kind}.host: {host!r} is not a login node; write it as user@host")
        if isinstance(scratch, str) and scratch:
            if not host:
                problems.append(f"executor.{kind}.scratch: needs executor.{kind}.host (files are copied there over "
                                "ssh); leave it empty when the cluster mounts this machine's storage")
            if not scratch.startswith("/") or scratch.rstrip("/") == "":
                problems.append(f"executor.{kind}.scratch: {scratch!r} must be an absolute folder below / on the "
                                "cluster (~ and $VARIABLES are not expanded)")


def _check_notify(config: Node, problems: list[str]) -> None:
    """An enabled channel must be able to send; say what is missing, never what a secret is."""
    email, slack = config.notify.email, config.notify.slack
    digest_at = config.notify.daily_digest_at
    if isinstance(digest_at, str) and digest_at and parse_clock_time(digest_at) is None:
        problems.append(f"notify.daily_digest_at: expected a time as HH:MM (e.g. 08:30), got '{digest_at}'")
    if email.enabled:
        for key in ("host", "sender"):
            if not email[key]:
                problems.append(f"notify.email.{key}: required when email is enabled")
        if not email.recipients:
            problems.append("notify.email.recipients: required when email is enabled (a list of addresses)")
        if email.username and not (email.password or os.environ.get(email.password_env or "")):
            problems.append(f"notify.email.password: a username is set but no password: set the environment "
                            f"variable {email.password_env} or notify.email.password")
    if slack.enabled and not (slack.webhook_url or os.environ.get(slack.webhook_url_env or "")):
        problems.append(f"notify.slack.webhook_url: required when Slack is enabled: set the environment "
                        f"variable {slack.webhook_url_env} or notify.slack.webhook_url")


def parse_clock_time(text: str) -> tuple[int, int] | None:
    """Given 'HH:MM', return (hours, minutes), or None if it is not a time of day."""
    hours, _, minutes = text.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        return None
    if not (0 <= int(hours) <= 23 and 0 <= int(minutes) <= 59):
        return None
    return int(hours), int(minutes)


def _describe(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"a {type(value).__name__}"
    return f"{type(value).__name__} {value!r}"


# ---------------------------------------------------------------------- example file

def example_yaml() -> str:
    """Return the commented example configuration, generated from the schema."""
    lines = [
        "# dlcwatch configuration. Generated by `dlcwatch config example` from the schema in",
        "# dlcwatch/config.py; every option is shown with its default unless marked required.",
        "",
    ]
    _example_section(SCHEMA, 0, lines)
    return "\n".join(lines).rstrip() + "\n"


def _example_section(section: Section, indent: int, lines: list[str]) -> None:
    pad = "  " * indent
    for key, spec in section.options.items():
        if isinstance(spec, Section):
            lines.append(f"{pad}# {spec.help}")
            lines.append(f"{pad}{key}:")
            _example_section(spec, indent + 1, lines)
        elif isinstance(spec, ListOf):
            lines.append(f"{pad}# {spec.help}")
            lines.append(f"{pad}{key}:")
            item_pad = "  " * (indent + 1)
            for item_key, item_spec in spec.item.options.items():
                first = item_key == next(iter(spec.item.options))
                lines.extend(_option_lines(item_key, item_spec, item_pad + ("- " if first else "  ")
                                           , item_pad + "  "))
        else:
            lines.extend(_option_lines(key, spec, pad, pad))
        if indent == 0:
            lines.append("")


def _option_lines(key: str, spec: Option, key_pad: str, comment_pad: str) -> list[str]:
    note = "REQUIRED. " if spec.required else ""
    choices = f" One of: {', '.join(spec.choices)}." if spec.choices else ""
    value = spec.example if spec.example is not None else spec.default
    if spec.example is not None and not spec.required:
        choices += f" Default: {spec.default!r}."
    rendered = yaml.safe_dump({key: value}, default_flow_style=True, allow_unicode=True,
                              width=1000).strip()[1:-1]
    return [f"{comment_pad}# {note}{spec.help}{choices}", f"{key_pad}{rendered}"]
