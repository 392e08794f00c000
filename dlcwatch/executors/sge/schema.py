"""The `executor.sge` section of the configuration schema (plugged into dlcwatch.config.SCHEMA).

The options every cluster executor has come from executors/cluster_schema.py; Grid Engine's own are here."""

from __future__ import annotations

from dlcwatch.executors.cluster_schema import SchedulerWords, cluster_section
from dlcwatch.schema import Option

SGE_WORDS = SchedulerWords(
    scheduler="Grid Engine", server="qmaster", login="submit host", node="execution host",
    time_limit="-l h_rt", time_cap_hint="", cpus_help="CPUs (slots) per job; video decoding uses them.",
    mem_help="Memory per job in GB; 0: ask for none.", memory_kill="its memory limit (h_vmem)",
    setup_note="Grid Engine starts jobs with a clean environment: set what the worker needs here.",
    in_flight_limits="The cluster's max_u_jobs is respected too, and when Grid Engine refuses a job for a per-user "
                     "limit, submission pauses until one of ours ends.",
    array_submit="one qsub -t 1-N; the cluster's max_aj_tasks is respected", one_submit_per_job="one qsub per job",
    array_throttle="qsub -tc", fallback_place="queue", fallback_example="cpu.q",
    poll_commands="one qstat, and one qacct when needed", poll_note="",
    commands="qsub, qstat, qacct or qdel")

SGE_SECTION = cluster_section(
    "The Grid Engine executor (Son of Grid Engine, Univa/Altair Grid Engine, Open Grid Scheduler): each job is one "
    "qsub job running the worker on an execution host.", SGE_WORDS,
    places={
        "queue": Option("str", "Cluster queue to submit to (qsub -q); empty: wherever Grid Engine puts it.",
                        default="", example="gpu.q"),
        "project": Option("str", "Project to charge (qsub -P); empty: none.", default="", example="smithlab"),
        "parallel_environment": Option("str", "Parallel environment that gives a job its CPUs as slots on one host "
                                       "(qsub -pe NAME cpus; its allocation_rule should be $pe_slots). Empty: "
                                       "jobs take one slot whatever cpus says.", default="smp", example="smp"),
    },
    resources={
        "memory_resource": Option("choice", "How memory is asked for. 'mem_free': the host must have that much free "
                                  "when the job starts (not enforced; works with GPU jobs). 'h_vmem': a hard limit "
                                  "on virtual memory, asked per slot (mem_gb / cpus) as Grid Engine counts it; a "
                                  "job past it is killed and retried with more memory. CUDA reserves far more "
                                  "virtual than real memory, so h_vmem suits CPU jobs better than GPU jobs.",
                                  default="mem_free", choices=("mem_free", "h_vmem")),
        "gpu_resource": Option("str", "The consumable complex that counts GPUs on this cluster (-l NAME=gpus); "
                               "ask your admin (`qconf -sc`). Common names: gpu, gpus, cuda.", default="gpu",
                               example="gpu"),
    },
    directives={
        "extra_qsub": Option("strings", "More qsub options, one per line, written as '#$ <option>' into the job "
                             "script.", default=[], example=["-l h=!node13", "-m a -M lab@example.org"]),
    },
    polling={
        "accounting_lag_s": Option("float", "A job qstat no longer lists, that qacct does not know yet and whose "
                                   "worker wrote no result, counts as lost only after this long: Grid Engine "
                                   "writes its accounting record up to reporting_params' flush_time (15 s by "
                                   "default) after the job ends.", default=120.0, minimum=0),
    })
