"""The `executor.sge` section of the configuration schema (plugged into dlcwatch.config.SCHEMA)."""

from __future__ import annotations

from dlcwatch.schema import Option, Section, ssh_section

SGE_SECTION = Section("The Grid Engine executor (Son of Grid Engine, Univa/Altair Grid Engine, Open Grid "
                      "Scheduler): each job is one qsub job running the worker on an execution host.", {
    "queue": Option("str", "Cluster queue to submit to (qsub -q); empty: wherever Grid Engine puts it.",
                    default="", example="gpu.q"),
    "project": Option("str", "Project to charge (qsub -P); empty: none.", default="", example="smithlab"),
    "parallel_environment": Option("str", "Parallel environment that gives a job its CPUs as slots on one host "
                                   "(qsub -pe NAME cpus; its allocation_rule should be $pe_slots). Empty: "
                                   "jobs take one slot whatever cpus says.", default="smp", example="smp"),
    "cpus": Option("int", "CPUs (slots) per job; video decoding uses them.", default=4, minimum=1),
    "time_limit_min": Option("int", "Time limit of a job in whole minutes (-l h_rt). Size it for "
                             "executor.videos_per_job videos.", default=120, minimum=1),
    "max_time_limit_min": Option("int", "After a job is killed for its time limit, its videos are tried again "
                                 "with retry_growth times more time, up to this many minutes; 0: no retries "
                                 "with more time.", default=1440, minimum=0),
    "mem_gb": Option("float", "Memory per job in GB; 0: ask for none.", default=16.0, minimum=0),
    "memory_resource": Option("choice", "How memory is asked for. 'mem_free': the host must have that much free "
                              "when the job starts (not enforced; works with GPU jobs). 'h_vmem': a hard limit "
                              "on virtual memory, asked per slot (mem_gb / cpus) as Grid Engine counts it; a "
                              "job past it is killed and retried with more memory. CUDA reserves far more "
                              "virtual than real memory, so h_vmem suits CPU jobs better than GPU jobs.",
                              default="mem_free", choices=("mem_free", "h_vmem")),
    "max_mem_gb": Option("float", "After a job is killed for its memory limit (h_vmem), its videos are tried "
                         "again with retry_growth times more memory, up to this many GB; 0: no retries with "
                         "more memory.", default=64.0, minimum=0),
    "retry_growth": Option("float", "Factor by which time or memory grows for the next attempt after a "
                           "time-limit or memory-limit kill.", default=2.0, minimum=1.0),
    "gpus": Option("int", "GPUs per job; 0 runs DeepLabCut on the CPU.", default=1, minimum=0),
    "gpu_resource": Option("str", "The consumable complex that counts GPUs on this cluster (-l NAME=gpus); "
                           "ask your admin (`qconf -sc`). Common names: gpu, gpus, cuda.", default="gpu",
                           example="gpu"),
    "extra_qsub": Option("strings", "More qsub options, one per line, written as '#$ <option>' into the job "
                         "script.", default=[], example=["-l h=!node13", "-m a -M lab@example.org"]),
    "setup": Option("strings", "Shell lines run on the execution host before the worker, e.g. to load the "
                    "DeepLabCut environment. Grid Engine starts jobs with a clean environment: set what the "
                    "worker needs here. A failing line fails the job.", default=[],
                    example=["module load cuda/12.1", "source ~/miniconda3/etc/profile.d/conda.sh",
                             "conda activate dlc"]),
    "command_prefix": Option("str", "Shell words put before the worker's python, e.g. to run it in a "
                             "container; empty: none.", default="",
                             example="apptainer exec --nv /images/deeplabcut.sif"),
    "python": Option("str", "Python of the DeepLabCut environment as the job sees it after setup (and inside "
                     "the container); it must be able to import dlcwatch.", default="python",
                     example="/opt/dlc-env/bin/python"),
    "max_jobs_in_flight": Option("int", "Most jobs of ours pending or running at once. The cluster's "
                                 "max_u_jobs is respected too, and when Grid Engine refuses a job for a "
                                 "per-user limit, submission pauses until one of ours ends.", default=20,
                                 minimum=1),
    "array_tasks": Option("int", "Submit jobs waiting at the same time as one job array of up to this many "
                          "tasks (one qsub -t 1-N; the cluster's max_aj_tasks is respected); 1: one qsub per "
                          "job. Each task is one job of executor.videos_per_job videos and counts towards "
                          "max_jobs_in_flight.", default=100, minimum=1),
    "array_throttle": Option("int", "Most tasks of one job array running at once (qsub -tc); 0: as many as "
                             "the cluster gives.", default=0, minimum=0),
    "host": Option("str", "The cluster's submit host as user@host when this machine is not one: every Grid "
                   "Engine command runs there over ssh (one shared connection, key login, no password "
                   "prompts). Empty: the commands run here.", default="", example="labuser@login.cluster.edu"),
    "ssh": ssh_section("How to log in to host."),
    "scratch": Option("str", "With host: a folder on the cluster's file system (absolute) to copy videos, the "
                      "model and job files into with rsync, for clusters that do not mount this machine's "
                      "storage; results are copied back. Empty: the cluster sees the same paths as this "
                      "machine (a shared file system) and nothing is copied.", default="",
                      example="/scratch/labuser/dlcwatch"),
    "scratch_quota_gb": Option("float", "Most GB of videos copied into scratch at once: videos wait on this "
                               "machine until there is room, and each copy is deleted once its video is "
                               "analyzed. 0: no limit.", default=0.0, minimum=0),
    "cpu_fallback": Section("When the cluster's GPUs are all taken: once one of our GPU jobs has waited longer "
                            "than after_pending_min, the next jobs go to a CPU queue instead (slower, but they "
                            "start). Jobs already waiting stay where they are.", {
        "queue": Option("str", "CPU queue for those jobs; empty: no fallback, GPU jobs wait.", default="",
                        example="cpu.q"),
        "after_pending_min": Option("float", "Minutes a GPU job may wait before the next ones go to the CPU "
                                    "queue.", default=60.0, minimum=0),
        "time_limit_min": Option("int", "Time limit of a CPU job in minutes: DeepLabCut runs several times "
                                 "slower without a GPU.", default=720, minimum=1),
        "cpus": Option("int", "CPUs of a CPU job.", default=8, minimum=1),
    }),
    "poll_interval_s": Option("float", "Seconds between polls of the cluster (one qstat, and one qacct when "
                              "needed, for all our jobs).", default=30.0, minimum=1),
    "accounting_lag_s": Option("float", "A job qstat no longer lists, that qacct does not know yet and whose "
                               "worker wrote no result, counts as lost only after this long: Grid Engine "
                               "writes its accounting record up to reporting_params' flush_time (15 s by "
                               "default) after the job ends.", default=120.0, minimum=0),
    "command_timeout_s": Option("float", "Give up on one qsub, qstat, qacct or qdel after this long; the "
                                "qmaster counts as unreachable.", default=60.0, minimum=1),
    "unreachable_backoff_s": Option("float", "While the qmaster does not answer, wait this long before "
                                    "asking again, doubling up to unreachable_backoff_max_s; jobs keep running "
                                    "meanwhile.", default=30.0, minimum=0),
    "unreachable_backoff_max_s": Option("float", "The longest wait between questions to a qmaster that does "
                                        "not answer.", default=600.0, minimum=0),
})
