"""The `executor.slurm` section of the configuration schema (plugged into dlcwatch.config.SCHEMA).

The options every cluster executor has come from executors/cluster_schema.py; SLURM's own are here."""

from __future__ import annotations

from dlcwatch.executors.cluster_schema import SchedulerWords, cluster_section
from dlcwatch.schema import Option

SLURM_WORDS = SchedulerWords(
    scheduler="SLURM", server="controller", login="login node", node="compute node",
    time_limit="sbatch --time", time_cap_hint="keep it within the partition's MaxTime",
    cpus_help="CPUs per job (sbatch --cpus-per-task); video decoding uses them.",
    mem_help="Memory per job in GB (sbatch --mem); 0: the cluster's default.",
    memory_kill="running out of memory", setup_note="",
    in_flight_limits="The cluster's MaxJobCount is respected too, and when SLURM refuses a job for a submit limit "
                     "(MaxSubmitJobs) submission pauses until one of ours ends.",
    array_submit="one sbatch call; the cluster's MaxArraySize is respected", one_submit_per_job="one sbatch per job",
    array_throttle="sbatch --array=0-N%K", fallback_place="partition", fallback_example="cpu",
    poll_commands="one squeue, and one sacct when needed",
    poll_note="Cluster admins frown on tools that ask more often than every 30 s.",
    commands="sbatch, squeue, sacct or scancel")

SLURM_SECTION = cluster_section(
    "The SLURM executor: each job is one sbatch job running the worker on a compute node.", SLURM_WORDS,
    places={
        "partition": Option("str", "Partition (queue) to submit to; empty: the cluster's default.", default="",
                            example="gpu"),
        "account": Option("str", "Account to charge (sbatch --account); empty: your default account.", default="",
                          example="lab-smith"),
        "qos": Option("str", "Quality of service (sbatch --qos); empty: the default.", default="", example="normal"),
    },
    resources={
        "gpu_type": Option("str", "GPU type to ask for (e.g. a100 gives --gres=gpu:a100:1); empty: any.", default="",
                           example="a100"),
        "gpu_option": Option("choice", "How to ask for GPUs: 'gres' (--gres=gpu:N, works everywhere) or 'gpus' "
                             "(--gpus=N, SLURM 19.05 and later).", default="gres", choices=("gres", "gpus")),
        "constraint": Option("str", "Node features the job needs (sbatch --constraint); empty: none.", default="",
                             example="avx2&cuda12"),
    },
    directives={
        "extra_sbatch": Option("strings", "More sbatch options, one per line, written as '#SBATCH <option>' into "
                               "the job script.", default=[], example=["--mail-type=FAIL", "--exclude=node13"]),
    })
