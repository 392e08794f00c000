"""The options every batch-scheduler executor's config section shares (SLURM, Grid Engine, PBS), written once.

Each scheduler's schema.py brings what is its own (where jobs go, how GPUs or memory are asked
for, its extra directives) and the words its people know (`sbatch --time`, `-l h_rt`); this
module puts them around the shared options in one order: places, resources, the scheduler's own
resource options, extra directives, the job side, limits, the remote mode, the CPU fallback,
polling.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlcwatch.schema import Option, Section, ssh_section

# The executor kinds whose section is a cluster_section (each has host, ssh, scratch, scratch_quota_gb).
CLUSTER_KINDS = ("slurm", "sge", "pbs")


@dataclass(frozen=True)
class SchedulerWords:
    """How one scheduler names what the shared options describe, spliced into their help."""

    scheduler: str                # "SLURM", "Grid Engine"
    server: str                   # what does not answer: "controller", "qmaster"
    login: str                    # where its commands run: "login node", "submit host"
    node: str                     # where jobs run: "compute node", "execution host"
    time_limit: str               # how the time limit is asked for: "sbatch --time"
    time_cap_hint: str            # "" or a hint after max_time_limit_min's cap, e.g. "keep it within …"
    cpus_help: str
    mem_help: str
    memory_kill: str              # "running out of memory", "its memory limit (h_vmem)"
    setup_note: str               # "" or a sentence after setup's help
    in_flight_limits: str         # which cluster limits max_jobs_in_flight also keeps
    array_submit: str             # "one sbatch call; the cluster's MaxArraySize is respected"
    one_submit_per_job: str       # "one sbatch per job"
    array_throttle: str           # how the throttle is written: "sbatch --array=0-N%K"
    fallback_place: str           # the resource key the CPU fallback changes: "partition", "queue"
    fallback_example: str
    poll_commands: str            # "one squeue, and one sacct when needed"
    poll_note: str                # "" or a sentence after poll_interval_s's help
    commands: str                 # "sbatch, squeue, sacct or scancel"


def cluster_section(help: str, words: SchedulerWords, *, places: dict, resources: dict, directives: dict,
                    polling: dict | None = None) -> Section:
    """Given a scheduler's own options (places: where jobs go; resources: how it asks for what the
    shared resources leave open; directives: its extra options in the job script; polling: its
    own polling options) and its words, return its executor section."""
    return Section(help, {
        **places,
        **_resource_options(words),
        **resources,
        **directives,
        **_job_side_options(words),
        **_limit_options(words),
        **_remote_options(words),
        "cpu_fallback": _cpu_fallback_section(words),
        **_polling_options(words, polling or {}),
    })


def _resource_options(words: SchedulerWords) -> dict:
    cap_hint = f" ({words.time_cap_hint})" if words.time_cap_hint else ""
    return {
        "time_limit_min": Option("int", f"Time limit of a job in whole minutes ({words.time_limit}). Size it for "
                                 "executor.videos_per_job videos.", default=120, minimum=1),
        "max_time_limit_min": Option("int", "After a job is killed for its time limit, its videos are tried again "
                                     f"with retry_growth times more time, up to this many minutes{cap_hint}; 0: no "
                                     "retries with more time.", default=1440, minimum=0),
        "cpus": Option("int", words.cpus_help, default=4, minimum=1),
        "mem_gb": Option("float", words.mem_help, default=16.0, minimum=0),
        "max_mem_gb": Option("float", f"After a job is killed for {words.memory_kill}, its videos are tried again "
                             "with retry_growth times more memory, up to this many GB; 0: no retries with more "
                             "memory.", default=64.0, minimum=0),
        "retry_growth": Option("float", "Factor by which time or memory grows for the next attempt after a "
                               "time-limit or memory-limit kill.", default=2.0, minimum=1.0),
        "gpus": Option("int", "GPUs per job; 0 runs DeepLabCut on the CPU.", default=1, minimum=0),
    }


def _job_side_options(words: SchedulerWords) -> dict:
    note = f" {words.setup_note}" if words.setup_note else ""
    return {
        "setup": Option("strings", f"Shell lines run on the {words.node} before the worker, e.g. to load the "
                        f"DeepLabCut environment.{note} A failing line fails the job.", default=[],
                        example=["module load cuda/12.1", "source ~/miniconda3/etc/profile.d/conda.sh",
                                 "conda activate dlc"]),
        "command_prefix": Option("str", "Shell words put before the worker's python, e.g. to run it in a "
                                 "container; empty: none.", default="",
                                 example="apptainer exec --nv /images/deeplabcut.sif"),
        "python": Option("str", "Python of the DeepLabCut environment as the job sees it after setup (and inside "
                         "the container); it must be able to import dlcwatch.", default="python",
                         example="/opt/dlc-env/bin/python"),
    }


def _limit_options(words: SchedulerWords) -> dict:
    return {
        "max_jobs_in_flight": Option("int", f"Most jobs of ours pending or running at once. {words.in_flight_limits}",
                                     default=20, minimum=1),
        "array_tasks": Option("int", "Submit jobs waiting at the same time as one job array of up to this many "
                              f"tasks ({words.array_submit}); 1: {words.one_submit_per_job}. Each task is one "
                              "job of executor.videos_per_job videos and counts towards max_jobs_in_flight.",
                              default=100, minimum=1),
        "array_throttle": Option("int", f"Most tasks of one job array running at once ({words.array_throttle}); "
                                 "0: as many as the cluster gives.", default=0, minimum=0),
    }


def _remote_options(words: SchedulerWords) -> dict:
    return {
        "host": Option("str", f"The cluster's {words.login} as user@host when this machine is not one: every "
                       f"{words.scheduler} command runs there over ssh (one shared connection, key login, no "
                       f"password prompts). Empty: {words.scheduler} commands run here.", default="",
                       example="labuser@login.cluster.edu"),
        "ssh": ssh_section("How to log in to host."),
        "scratch": Option("str", "With host: a folder on the cluster's file system (absolute) to copy videos, the "
                          "model and job files into with rsync, for clusters that do not mount this machine's "
                          "storage; results are copied back. Empty: the cluster sees the same paths as this "
                          "machine (a shared file system) and nothing is copied.", default="",
                          example="/scratch/labuser/dlcwatch"),
        "scratch_quota_gb": Option("float", "Most GB of videos copied into scratch at once: videos wait on this "
                                   "machine until there is room, and each copy is deleted once its video is "
                                   "analyzed. 0: no limit.", default=0.0, minimum=0),
    }


def _cpu_fallback_section(words: SchedulerWords) -> Section:
    place = words.fallback_place
    return Section("When the cluster's GPUs are all taken: once one of our GPU jobs has waited longer than "
                   f"after_pending_min, the next jobs go to a CPU {place} instead (slower, but they start). Jobs "
                   "already waiting stay where they are.", {
        place: Option("str", f"CPU {place} for those jobs; empty: no fallback, GPU jobs wait.", default="",
                      example=words.fallback_example),
        "after_pending_min": Option("float", f"Minutes a GPU job may wait before the next ones go to the CPU {place}.",
                                    default=60.0, minimum=0),
        "time_limit_min": Option("int", "Time limit of a CPU job in minutes: DeepLabCut runs several times "
                                 "slower without a GPU.", default=720, minimum=1),
        "cpus": Option("int", "CPUs of a CPU job.", default=8, minimum=1),
    })


def _polling_options(words: SchedulerWords, own: dict) -> dict:
    note = f" {words.poll_note}" if words.poll_note else ""
    server = words.server
    return {
        "poll_interval_s": Option("float", f"Seconds between polls of the cluster ({words.poll_commands}, for all "
                                  f"our jobs).{note}", default=30.0, minimum=1),
        **own,
        "command_timeout_s": Option("float", f"Give up on one {words.commands} after this long; the {server} "
                                    "counts as unreachable.", default=60.0, minimum=1),
        "unreachable_backoff_s": Option("float", f"While the {server} does not answer, wait this long before "
                                        "asking again, doubling up to unreachable_backoff_max_s; jobs keep running "
                                        "meanwhile.", default=30.0, minimum=0),
        "unreachable_backoff_max_s": Option("float", f"The longest wait between questions to a {server} that does "
                                            "not answer.", default=600.0, minimum=0),
    }
