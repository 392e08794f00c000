"""The `executor.slurm` section of the configuration schema (plugged into dlcwatch.config.SCHEMA)."""

from __future__ import annotations

from dlcwatch.schema import Option, Section, ssh_section

SLURM_SECTION = Section("The SLURM executor: each job is one sbatch job running the worker on a compute node.", {
    "partition": Option("str", "Partition (queue) to submit to; empty: the cluster's default.", default="",
                        example="gpu"),
    "account": Option("str", "Account to charge (sbatch --account); empty: your default account.", default="",
                      example="lab-smith"),
    "qos": Option("str", "Quality of service (sbatch --qos); empty: the default.", default="", example="normal"),
    "time_limit_min": Option("int", "Time limit of a job in whole minutes (sbatch --time). Size it for "
                             "executor.videos_per_job videos.", default=120, minimum=1),
    "max_time_limit_min": Option("int", "After a job is killed for its time limit, its videos are tried again "
                                 "with retry_growth times more time, up to this many minutes (keep it within "
                                 "the partition's MaxTime); 0: no retries with more time.", default=1440,
                                 minimum=0),
    "cpus": Option("int", "CPUs per job (sbatch --cpus-per-task); video decoding uses them.", default=4,
                   minimum=1),
    "mem_gb": Option("float", "Memory per job in GB (sbatch --mem); 0: the cluster's default.", default=16.0,
                     minimum=0),
    "max_mem_gb": Option("float", "After a job is killed for running out of memory, its videos are tried again "
                         "with retry_growth times more memory, up to this many GB; 0: no retries with more "
                         "memory.", default=64.0, minimum=0),
    "retry_growth": Option("float", "Factor by which time or memory grows for the next attempt after a "
                           "TIMEOUT or OUT_OF_MEMORY.", default=2.0, minimum=1.0),
    "gpus": Option("int", "GPUs per job; 0 runs DeepLabCut on the CPU.", default=1, minimum=0),
    "gpu_type": Option("str", "GPU type to ask for (e.g. a100 gives --gres=gpu:a100:1); empty: any.", default="",
                       example="a100"),
    "gpu_option": Option("choice", "How to ask for GPUs: 'gres' (--gres=gpu:N, works everywhere) or 'gpus' "
                         "(--gpus=N, SLURM 19.05 and later).", default="gres", choices=("gres", "gpus")),
    "constraint": Option("str", "Node features the job needs (sbatch --constraint); empty: none.", default="",
                         example="avx2&cuda12"),
    "extra_sbatch": Option("strings", "More sbatch options, one per line, written as '#SBATCH <option>' into "
                           "the job script.", default=[], example=["--mail-type=FAIL", "--exclude=node13"]),
    "setup": Option("strings", "Shell lines run on the compute node before the worker, e.g. to load the "
                    "DeepLabCut environment. A failing line fails the job.", default=[],
                    example=["module load cuda/12.1", "source ~/miniconda3/etc/profile.d/conda.sh",
                             "conda activate dlc"]),
    "command_prefix": Option("str", "Shell words put before the worker's python, e.g. to run it in a "
                             "container; empty: none.", default="",
                             example="apptainer exec --nv /images/deeplabcut.sif"),
    "python": Option("str", "Python of the DeepLabCut environment as the job sees it after setup (and inside "
                     "the container); it must be able to import dlcwatch.", default="python",
                     example="/opt/dlc-env/bin/python"),
    "max_jobs_in_flight": Option("int", "Most jobs of ours pending or running at once. The cluster's "
                                 "MaxJobCount is respected too, and when SLURM refuses a job for a "
                                 "submit limit (MaxSubmitJobs) submission pauses until one of ours ends.",
                                 default=20, minimum=1),
    "array_tasks": Option("int", "Submit jobs waiting at the same time as one job array of up to this many "
                          "tasks (one sbatch call; the cluster's MaxArraySize is respected); 1: one sbatch "
                          "per job. Each task is one job of executor.videos_per_job videos and counts "
                          "towards max_jobs_in_flight.", default=100, minimum=1),
    "array_throttle": Option("int", "Most tasks of one job array running at once (sbatch --array=0-N%K); "
                             "0: as many as the cluster gives.", default=0, minimum=0),
    "host": Option("str", "The cluster's login node as user@host when this machine is not one: every SLURM "
                   "command runs there over ssh (one shared connection, key login, no password prompts). "
                   "Empty: SLURM commands run here.", default="", example="labuser@login.cluster.edu"),
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
                            "than after_pending_min, the next jobs go to a CPU partition instead (slower, but "
                            "they start). Jobs already waiting stay where they are.", {
        "partition": Option("str", "CPU partition for those jobs; empty: no fallback, GPU jobs wait.", default="",
                            example="cpu"),
        "after_pending_min": Option("float", "Minutes a GPU job may wait before the next ones go to the CPU "
                                    "partition.", default=60.0, minimum=0),
        "time_limit_min": Option("int", "Time limit of a CPU job in minutes: DeepLabCut runs several times "
                                 "slower without a GPU.", default=720, minimum=1),
        "cpus": Option("int", "CPUs of a CPU job.", default=8, minimum=1),
    }),
    "poll_interval_s": Option("float", "Seconds between polls of the cluster (one squeue, and one sacct when "
                              "needed, for all our jobs). Cluster admins frown on tools that ask more "
                              "often than every 30 s.", default=30.0, minimum=1),
    "command_timeout_s": Option("float", "Give up on one sbatch, squeue, sacct or scancel after this long; "
                                "the controller counts as unreachable.", default=60.0, minimum=1),
    "unreachable_backoff_s": Option("float", "While the controller does not answer, wait this long before "
                                    "asking again, doubling up to unreachable_backoff_max_s; jobs keep running "
                                    "meanwhile.", default=30.0, minimum=0),
    "unreachable_backoff_max_s": Option("float", "The longest wait between questions to a controller that does "
                                        "not answer.", default=600.0, minimum=0),
})
