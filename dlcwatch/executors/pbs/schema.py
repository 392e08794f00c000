"""The `executor.pbs` section of the configuration schema (plugged into dlcwatch.config.SCHEMA).

The options every cluster executor has come from executors/cluster_schema.py; PBS's own are here."""

from __future__ import annotations

from dlcwatch.executors.cluster_schema import SchedulerWords, cluster_section
from dlcwatch.schema import Option

PBS_WORDS = SchedulerWords(
    scheduler="PBS", server="server", login="login node", node="compute node",
    time_limit="-l walltime", time_cap_hint="keep it within the queue's resources_max.walltime",
    cpus_help="CPUs per job (ncpus in its select chunk); video decoding uses them.",
    mem_help="Memory per job in GB (mem in its select chunk); 0: ask for none (the queue's default applies).",
    memory_kill="its memory limit (PBS's own exit status -27, or the cgroup hook's kill)",
    setup_note="PBS starts jobs with the login environment of your account, not the one qsub ran in.",
    in_flight_limits="The server's max_queued for your user is respected too (each subjob counts), and when PBS "
                     "refuses a job for such a limit, submission pauses until one of ours ends.",
    array_submit="one qsub -J 0-N; the server's max_array_size is respected; PBS wants two subjobs or more",
    one_submit_per_job="one qsub per job",
    array_throttle="qsub -J 0-N%K; needs OpenPBS 22.05 or PBS Professional 2020.1 or later",
    fallback_place="queue", fallback_example="cpuq",
    poll_commands="one qstat -f -F json", poll_note="",
    commands="qsub, qstat, qselect or qdel")

PBS_SECTION = cluster_section(
    "The PBS executor (OpenPBS, PBS Professional): each job is one qsub job running the worker on a compute "
    "node. Not yet run against a real PBS server: its tests use a stand-in that replays PBS's documented "
    "output.", PBS_WORDS,
    places={
        "queue": Option("str", "Queue to submit to (qsub -q); empty: the server's default queue.", default="",
                        example="gpuq"),
        "account": Option("str", "Account string to charge (qsub -A); empty: none.", default="",
                          example="lab-smith"),
        "project": Option("str", "Project (qsub -P, PBS Professional 13 and later); empty: none.", default="",
                          example="smithlab"),
    },
    resources={
        "gpu_resource": Option("str", "The resource that counts GPUs in a select chunk on this cluster "
                               "(select=1:ncpus=4:NAME=1); ask your admin (`qmgr -c 'list resource'`). PBS's "
                               "usual name is ngpus.", default="ngpus", example="ngpus"),
        "chunk_resources": Option("str", "More resources of the job's one chunk, appended to its select statement "
                                  "(e.g. gpu_model=a100); empty: none.", default="", example="gpu_model=a100"),
    },
    directives={
        "extra_qsub": Option("strings", "More qsub options, one per line, written as '#PBS <option>' into the job "
                             "script.", default=[], example=["-m a -M lab@example.org", "-l place=excl"]),
    },
    polling={
        "commands_dir": Option("str", "Folder of qsub, qstat, qselect and qdel where they are not on the PATH of "
                               "the commands dlcwatch runs (PBS installs them in /opt/pbs/bin, which a "
                               "non-interactive ssh session often lacks); empty: the PATH.", default="",
                               example="/opt/pbs/bin"),
    })
