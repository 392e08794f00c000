"""A stand-in for a PBS server and its client commands (qsub, qstat, qdel, qselect), for dlcwatch's tests.

It is NOT PBS, and passing tests against it do not show that dlcwatch works with a real PBS server:
no PBS server can be installed where dlcwatch is developed (Debian 12 packages none), so this
replays what OpenPBS documents and prints (tests/pbs_recorded/README.md says where each format
comes from), as far as dlcwatch uses it, and really runs the job scripts:

- qsub reads #PBS directives (until the first command) and its own options, prints '123.server' or
  '123[].server' for an array (-J X-Y[%max_run_subjobs]); refuses an unknown queue, an array over
  max_array_size and, past max_queued ([u:PBS_GENERIC=N], subjobs counted), with PBS's own words
  and exit codes (PBS error number mod 256);
- a server process (`serve`) starts queued jobs while the node has ncpus/ngpus free (and an array's
  max_run_subjobs allows), runs the script with the job's shell as a login shell in the user's home
  on "the compute node" (a folder `home` in the spool: the tests do not read this machine's own
  dotfiles) with PBS_JOBID, PBS_ARRAY_INDEX, … set, kills a job past its walltime (Exit_status -29) or, like
  MoM with `$enforce mem`, past its mem (-27), kills a qdel'ed one with SIGTERM then SIGKILL
  (Exit_status 256 + signal, substate 91); a job's top process killed by a signal is 256 + signal;
- qstat -f -F json [-x] [-t] prints cJSON-style output: Jobs by id with job_state Q/R/F (X for an
  ended subjob), substate, Exit_status, comment ("Job run at … and finished"), resources_used,
  Resource_List; an ended subjob without job history is a bare X ("Subjob finished", no exit
  status), an ended job without history "Unknown Job Id"; qstat -B -f -F json the server;
- qdel and qselect (-N, -u, -x) as PBS answers them;
- one shortcut real PBS has not: `walltime_speed` in server.json makes a job's walltime run that many
  times faster than the clock (resources_used.walltime too), so a one-minute limit ends in seconds;
- `node-fail` kills every running job as a failed host would, and requeues it (PBS's
  node_fail_requeue; our jobs are rerunnable); a file `down` in the spool folder makes every
  command answer as when the server does not ("cannot connect to server").

State lives in one JSON file in the spool folder, under an flock; the server process keeps the
running jobs' processes.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

VERSION = "23.06.06"
HISTORY_ERROR = "PBS is not configured to maintain job history"
# PBS error numbers (OpenPBS src/include/pbs_error.h); a command exits with the number mod 256.
PBSE_UNKJOBID, PBSE_UNKQUE, PBSE_BADSTATE, PBSE_NOSERVER = 15001, 15018, 15016, 15010
PBSE_MAXARRAYSIZE, PBSE_HISTJOBID, PBSE_ENTLIMCT = 15107, 15139, 15142
KILL_WALLTIME, KILL_MEM = -29, -27
SIGNAL_BASE = 256
TERMINATED, FINISHED, FAILED = 91, 92, 93
DEFAULT_SERVER = {"name": "pbsserver", "ncpus": 8, "ngpus": 2, "history": True, "max_array_size": 10000,
                  "max_queued": "", "queues": ["workq"], "kill_delay_s": 2.0, "tick_s": 0.25, "enforce_mem": True,
                  "walltime_speed": 1.0}


class Spool:
    """The server's state: server.json (its settings), state.json (the jobs), under spool/lock."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @property
    def server(self) -> dict:
        return {**DEFAULT_SERVER, **json.loads((self.folder / "server.json").read_text())}

    def down(self) -> bool:
        return (self.folder / "down").exists()

    @contextmanager
    def locked(self):
        """Yield the state (a dict) under the lock; write it back afterwards."""
        with open(self.folder / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self.folder / "state.json"
            state = json.loads(path.read_text()) if path.exists() else {"next": 100, "jobs": {}}
            yield state
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(state))
            os.replace(temporary, path)


def full_id(server: dict, sequence: int | str, index=None, array=False) -> str:
    part = f"[{index}]" if index is not None else "[]" if array else ""
    return f"{sequence}{part}.{server['name']}"


def parse_operand(text: str) -> tuple[str, int | None, bool] | None:
    """'123', '123.srv', '123[]', '123[4].srv' -> (sequence, index or None, names an array)."""
    match = re.fullmatch(r"(\d+)(\[(\d*)\])?(\.[^@\s]+)?(@\S+)?", text.strip())
    if not match:
        return None
    return match[1], int(match[3]) if match[3] else None, match[2] is not None and not match[3]


def fail(command: str, message: str, code: int) -> int:
    print(f"{command}: {message}", file=sys.stderr)
    return code % 256


def cannot_connect(command: str, server: dict) -> int:
    """What every command prints when the server does not answer (recorded from qstat, OpenPBS 22.05.11)."""
    print(f"Connection refused\n{command}: cannot connect to server {server['name']} (errno={PBSE_NOSERVER})",
          file=sys.stderr)
    return 255 if command == "qstat" else PBSE_NOSERVER % 256


# ---------------------------------------------------------------------- qsub

def parse_resources(text: str, into: dict) -> str | None:
    """-l a=b,c=d into into; return an error message or None."""
    for item in text.split(","):
        key, _, value = item.partition("=")
        key = key.strip()
        if key == "select":
            chunk = value.split(":")
            if not chunk[0].isdigit() or chunk[0] != "1":
                return f"illegal -l value"
            for part in chunk[1:]:
                name, _, amount = part.partition("=")
                if name not in ("ncpus", "ngpus", "mem", "gpu_model", "host", "vnode"):
                    return f"Unknown resource Resource_List.{name}"
                into[name] = amount
            into["select"] = value
        elif key in ("walltime", "place", "mem", "ncpus"):
            into[key] = value
        else:
            return f"Unknown resource Resource_List.{key}"
    return None


def size_kb(text: str) -> int:
    match = re.fullmatch(r"(\d+)([kmgt]?b)?", text.strip().lower())
    if not match:
        raise ValueError(text)
    unit = {"b": 1 / 1024, "kb": 1, "mb": 1024, "gb": 1024 ** 2, "tb": 1024 ** 3}[match[2] or "b"]
    return int(int(match[1]) * unit)


def seconds(text: str) -> int:
    total = 0
    for part in str(text).split(":"):
        total = total * 60 + int(float(part))
    return total


def qsub(spool: Spool, argv: list[str]) -> int:
    server = spool.server
    if spool.down():
        return cannot_connect("qsub", server)
    options: dict = {"l": {}}
    arguments = list(argv)
    script_path = None
    while arguments:
        word = arguments.pop(0)
        if word.startswith("-") and len(word) >= 2 and word[1] in "NqAPlJjoerSmMWhkVv":
            flag = word[1]
            if flag in "hV":
                options[flag] = True
                continue
            value = word[2:] or (arguments.pop(0) if arguments else None)
            if value is None:
                return fail("qsub", f"option requires an argument -- '{flag}'", 2)
            if flag == "l":
                problem = parse_resources(value, options["l"])
                if problem:
                    return fail("qsub", problem, 2)
            else:
                options[flag] = value
        elif word.startswith("-"):
            return fail("qsub", f"invalid option -- '{word[1:2]}'", 2)
        else:
            script_path = word
            break
    script = Path(script_path).read_text() if script_path else sys.stdin.read()
    directives: dict = {"l": {}}
    for line in script.splitlines()[1:] if script.startswith("#!") else script.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break  # directives end at the first command
        if not stripped.startswith("#PBS"):
            continue
        words = shlex.split(stripped[4:])
        while words:
            word = words.pop(0)
            flag = word[1:2]
            if flag in "hV":
                directives[flag] = True
                continue
            value = word[2:] or (words.pop(0) if words else "")
            if flag == "l":
                problem = parse_resources(value, directives["l"])
                if problem:
                    return fail("qsub", problem, 2)
            elif flag in "NqAPJjoerSmMWk":
                directives[flag] = value
            else:
                return fail("qsub", f"illegal -{flag} value", 2)
    resources = {**directives["l"], **options["l"]}
    settings = {**directives, **options, "l": resources}
    queue = settings.get("q") or server["queues"][0]
    if queue not in server["queues"]:
        return fail("qsub", "Unknown queue", PBSE_UNKQUE)
    array = None
    if "J" in settings:
        range_text, _, max_run = settings["J"].partition("%")
        match = re.fullmatch(r"(\d+)-(\d+)(?::(\d+))?", range_text)
        if not match or int(match[1]) >= int(match[2]) or (max_run and not max_run.isdigit()):
            print("qsub: illegal -J value", file=sys.stderr)
            return 2
        array = {"start": int(match[1]), "end": int(match[2]), "step": int(match[3] or 1),
                 "max_run": int(max_run) if max_run else 0}
        if len(range(array["start"], array["end"] + 1, array["step"])) > server["max_array_size"]:
            return fail("qsub", "Array job exceeds server or queue size limit", PBSE_MAXARRAYSIZE)
    try:
        mem_kb = size_kb(resources["mem"]) if resources.get("mem") else 0
        walltime_s = seconds(resources.get("walltime", "01:00:00"))
    except ValueError:
        return fail("qsub", "illegal -l value", 2)
    user = getpass.getuser()
    with spool.locked() as state:
        limit = re.search(r"\[u:(?:PBS_GENERIC|%s)=(\d+)\]" % re.escape(user), server["max_queued"] or "")
        if limit:
            count = len(range(array["start"], array["end"] + 1, array["step"])) if array else 1
            if _queued_count(state) + count > int(limit[1]):
                return fail("qsub", "would exceed complex's per-user limit", PBSE_ENTLIMCT)
        sequence = state["next"]
        state["next"] += 1
        now = time.time()
        (spool.folder / "scripts").mkdir(exist_ok=True)
        (spool.folder / "scripts" / f"{sequence}.sh").write_text(script)
        job = {"sequence": sequence, "name": settings.get("N", Path(script_path).name if script_path else "STDIN"),
               "owner": f"{user}@{socket.gethostname()}", "queue": queue, "account": settings.get("A", ""),
               "project": settings.get("P", "_pbs_project_default"), "ctime": now, "mtime": now,
               "ncpus": int(resources.get("ncpus", 1)), "ngpus": int(resources.get("ngpus", 0)), "mem_kb": mem_kb,
               "select": resources.get("select", f"1:ncpus={resources.get('ncpus', 1)}"), "walltime_s": walltime_s,
               "shell": settings.get("S", "/bin/bash"), "join": settings.get("j", "n"),
               "output": settings.get("o", ""), "error": settings.get("e", ""), "hold": bool(settings.get("h")),
               "workdir": os.getcwd(), "submit_arguments": " ".join(argv), "array": array,
               "state": "H" if settings.get("h") else "Q", "substate": 20 if settings.get("h") else 10}
        if array:
            job["subjobs"] = {str(index): _queued_unit() for index in range(array["start"], array["end"] + 1,
                                                                                array["step"])}
        else:
            job.update(_queued_unit())
        if job["hold"]:  # qsub -h: held until qrls (there is none here); an array's subjobs with it
            for unit in _units(job):
                unit.update(state="H", substate=20)
            job.update(state="H", substate=20)
        state["jobs"][str(sequence)] = job
    print(full_id(server, sequence, array=bool(array)))
    return 0


def _queued_unit() -> dict:
    """What a job or subjob that has not run yet holds."""
    return {"state": "Q", "substate": 10, "run_count": 0, "object": False, "exit_status": None, "comment": ""}


def _queued_count(state: dict) -> int:
    count = 0
    for job in state["jobs"].values():
        for unit in _units(job):
            count += unit["state"] in ("Q", "H", "R", "E")
    return count


def _units(job: dict) -> list[dict]:
    return list(job["subjobs"].values()) if job.get("array") else [job]


# ---------------------------------------------------------------------- qstat

def qstat(spool: Spool, argv: list[str]) -> int:
    server = spool.server
    flags = {word for word in argv if word.startswith("-") and word != "-F"}
    operands = [word for index, word in enumerate(argv) if not word.startswith("-") and argv[index - 1] != "-F"]
    output = {"timestamp": int(time.time()), "pbs_version": VERSION, "pbs_server": server["name"]}
    if spool.down():
        print(cjson(output))
        return cannot_connect("qstat", server)
    if "-B" in flags:
        output["Server"] = {server["name"]: _server_attributes(spool, server)}
        print(cjson(output))
        return 0
    history, subjobs = "-x" in flags, "-t" in flags
    failed = 0
    jobs = {}
    with spool.locked() as state:
        if history and not server["history"]:
            for operand in operands:
                parsed = parse_operand(operand)
                shown = full_id(server, *parsed[:2], array=parsed[2]) if parsed else operand
                print(f"qstat: {HISTORY_ERROR} {shown}", file=sys.stderr)
            print(cjson(output))
            return 0  # qstat exits 0 for PBSE_JOBHISTNOTSET (OpenPBS qstat.c)
        for operand in operands:
            parsed = parse_operand(operand)
            if parsed is None:
                print(f"qstat: illegally formed job identifier: {operand}", file=sys.stderr)
                failed = 1
                continue
            sequence, index, is_array = parsed
            shown = full_id(server, sequence, index, is_array)
            job = state["jobs"].get(sequence)
            if job is None or bool(job.get("array")) != (is_array or index is not None) or (
                    index is not None and str(index) not in job["subjobs"]):
                print(f"qstat: Unknown Job Id {shown}", file=sys.stderr)
                failed = PBSE_UNKJOBID
                continue
            if job["state"] == "F" and not history:
                print(f"qstat: {shown} Job has finished, use -x or -H to obtain historical job information",
                      file=sys.stderr)
                failed = PBSE_HISTJOBID
                continue
            if index is not None:
                jobs[shown] = _subjob_attributes(server, job, index)
                continue
            jobs[full_id(server, sequence, array=is_array)] = _job_attributes(server, job)
            if is_array and subjobs:
                for key in sorted(job["subjobs"], key=int):
                    jobs[full_id(server, sequence, int(key))] = _subjob_attributes(server, job, int(key))
    if jobs:
        output["Jobs"] = jobs
    print(cjson(output))
    return failed % 256


def _server_attributes(spool: Spool, server: dict) -> dict:
    attributes = {"server_state": "Active", "server_host": server["name"], "scheduling": "True",
                  "default_queue": server["queues"][0], "log_events": 511, "mail_from": "adm",
                  "query_other_jobs": "True", "resources_default.ncpus": 1, "default_chunk": {"ncpus": 1},
                  "scheduler_iteration": 600, "flatuid": "True", "pbs_license_min": 0,
                  "eligible_time_enable": "False", "max_concurrent_provision": 5, "power_provisioning": "False",
                  "max_array_size": server["max_array_size"], "pbs_version": VERSION}
    if server["history"]:
        attributes["job_history_enable"] = "True"
    if server["max_queued"]:
        attributes["max_queued"] = server["max_queued"]
    return attributes


def _time_text(moment: float) -> str:
    return time.ctime(moment)


def _clock(total: float) -> str:
    total = int(total)
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _size_text(kb: int) -> str:
    return f"{kb}kb"


def _job_attributes(server: dict, job: dict, unit: dict | None = None, index: int | None = None) -> dict:
    """A job's (or, with unit, a subjob's) attributes in the order qstat -f prints them."""
    unit = job if unit is None else unit
    attributes: dict = {"Job_Name": job["name"], "Job_Owner": job["owner"]}
    if unit.get("stime"):
        used = {"cpupercent": 0, "cput": "00:00:00", "mem": _size_text(unit.get("mem_used_kb", 0)),
                "ncpus": job["ncpus"], "vmem": _size_text(unit.get("mem_used_kb", 0)),
                "walltime": _clock(unit.get("walltime_used", 0))}
        attributes["resources_used"] = used
    attributes["job_state"] = unit["state"]
    attributes["queue"] = job["queue"]
    attributes["server"] = server["name"]
    if job["account"]:
        attributes["Account_Name"] = job["account"]
    attributes.update({"Checkpoint": "u", "ctime": _time_text(job["ctime"]),
                       "Error_Path": f"{job['owner'].split('@')[1]}:{job['error'] or job['workdir']}"})
    if unit.get("stime"):
        attributes["exec_host"] = f"{server['name']}/0*{job['ncpus']}"
        attributes["exec_vnode"] = f"({server['name']}:ncpus={job['ncpus']})"
    attributes.update({"Hold_Types": "u" if job["hold"] else "n", "Join_Path": job["join"], "Keep_Files": "n",
                       "Mail_Points": "a", "mtime": _time_text(job["mtime"]),
                       "Output_Path": f"{job['owner'].split('@')[1]}:{job['output'] or job['workdir']}",
                       "Priority": 0, "qtime": _time_text(job["ctime"]), "Rerunable": "True"})
    asked = {"mem": _size_text(job["mem_kb"])} if job["mem_kb"] else {}
    asked.update({"ncpus": job["ncpus"]})
    if job["ngpus"]:
        asked["ngpus"] = job["ngpus"]
    asked.update({"nodect": 1, "place": "pack", "select": job["select"], "walltime": _clock(job["walltime_s"])})
    attributes["Resource_List"] = asked
    if unit.get("stime"):
        attributes["stime"] = _time_text(unit["stime"])
        if unit["state"] == "R":
            attributes["session_id"] = unit.get("pid", 0)
        attributes["jobdir"] = unit.get("jobdir", "")
    attributes["substate"] = unit["substate"]
    attributes["Variable_List"] = {"PBS_O_HOME": os.path.expanduser("~"), "PBS_O_LOGNAME": getpass.getuser(),
                                   "PBS_O_WORKDIR": job["workdir"], "PBS_O_SYSTEM": "Linux",
                                   "PBS_O_QUEUE": job["queue"], "PBS_O_HOST": job["owner"].split("@")[1]}
    if unit.get("comment"):
        attributes["comment"] = unit["comment"]
    attributes["etime"] = _time_text(job["ctime"])
    attributes["run_count"] = unit.get("run_count", 0)
    if unit.get("exit_status") is not None:
        attributes["Exit_status"] = unit["exit_status"]
    attributes["Submit_arguments"] = job["submit_arguments"]
    attributes["project"] = job["project"]
    attributes["Submit_Host"] = job["owner"].split("@")[1]
    if job.get("array") and index is None:
        counts = {state: sum(u["state"] == letter for u in job["subjobs"].values())
                  for state, letter in (("Queued", "Q"), ("Running", "R"), ("Exiting", "E"), ("Expired", "X"))}
        remaining = [key for key, u in job["subjobs"].items() if u["state"] == "Q"]
        attributes.update({"array": "True", "array_state_count": " ".join(f"{k}:{v}" for k, v in counts.items()) + " ",
                           "array_indices_submitted": f"{job['array']['start']}-{job['array']['end']}",
                           "array_indices_remaining": _ranges([int(key) for key in remaining]) or "-"})
        if job["array"]["max_run"]:
            attributes["max_run_subjobs"] = job["array"]["max_run"]
    if index is not None:
        attributes["array_id"] = full_id(server, job["sequence"], array=True)
        attributes["array_index"] = index
    return attributes


def _subjob_attributes(server: dict, job: dict, index: int) -> dict:
    unit = job["subjobs"][str(index)]
    if unit["object"]:
        return _job_attributes(server, job, unit, index)
    # No job object (never ran, or ended without history): PBS fakes it from the parent (stat_job.c).
    ended = unit["state"] in ("X", "F")
    faked = {**unit, "stime": None, "exit_status": None, "run_count": 0, "substate": FINISHED if ended
             else unit["substate"], "comment": "Subjob finished" if ended else ""}
    return _job_attributes(server, job, faked, index)


def _ranges(numbers: list[int]) -> str:
    numbers = sorted(numbers)
    parts, start = [], None
    for position, number in enumerate(numbers):
        if start is None:
            start = number
        if position + 1 == len(numbers) or numbers[position + 1] != number + 1:
            parts.append(f"{start}-{number}" if number != start else f"{start}")
            start = None
    return ",".join(parts)


def cjson(value, depth: int = 0) -> str:
    """JSON as OpenPBS's qstat prints it with cJSON_Print: tab indents, a tab after each colon."""
    if isinstance(value, dict):
        if not value:
            return "{\n" + "\t" * depth + "}"
        inner = ",\n".join("\t" * (depth + 1) + json.dumps(key) + ":\t" + cjson(item, depth + 1)
                           for key, item in value.items())
        return "{\n" + inner + "\n" + "\t" * depth + "}"
    return json.dumps(value)


# ---------------------------------------------------------------------- qdel and qselect

def qdel(spool: Spool, argv: list[str]) -> int:
    server = spool.server
    if spool.down():
        return cannot_connect("qdel", server)
    failed = 0
    with spool.locked() as state:
        for operand in [word for word in argv if not word.startswith("-")]:
            parsed = parse_operand(operand)
            if parsed is None:
                failed = fail("qdel", f"illegally formed job identifier: {operand}", 1)
                continue
            sequence, index, is_array = parsed
            shown = full_id(server, sequence, index, is_array)
            job = state["jobs"].get(sequence)
            if job is None or (index is not None and str(index) not in job.get("subjobs", {})):
                failed = fail("qdel", f"Unknown Job Id {shown}", PBSE_UNKJOBID)
                continue
            units = [job["subjobs"][str(index)]] if index is not None else _units(job)
            if job["state"] == "F":
                failed = fail("qdel", f"Job has finished {shown}", PBSE_HISTJOBID)
                continue
            if any(unit["state"] == "E" for unit in units):
                failed = fail("qdel", f"Request invalid for state of job {shown}", PBSE_BADSTATE)
                continue
            for unit in units:
                if unit["state"] == "R":
                    unit["delete"] = True  # the server sends SIGTERM, then SIGKILL after kill_delay
                elif unit["state"] in ("Q", "H"):
                    _end_unqueued(server, job, unit)
            _settle(server, state, job)
    return failed


def _end_unqueued(server: dict, job: dict, unit: dict) -> None:
    """A job deleted before it ran: history keeps it terminated; a subjob just expires (no object)."""
    unit.update(state="X" if job.get("array") else "F", substate=TERMINATED, comment="")
    if not job.get("array") and not server["history"]:
        unit["purge"] = True


def qselect(spool: Spool, argv: list[str]) -> int:
    server = spool.server
    if spool.down():
        return cannot_connect("qselect", server)
    name = user = None
    history = "-x" in argv
    for position, word in enumerate(argv):
        if word == "-N":
            name = argv[position + 1]
        elif word == "-u":
            user = argv[position + 1]
    if history and not server["history"]:
        print(f"qselect: {HISTORY_ERROR}", file=sys.stderr)
        return 0
    with spool.locked() as state:
        for key in sorted(state["jobs"], key=int):
            job = state["jobs"][key]
            if (name and job["name"] != name) or (user and job["owner"].split("@")[0] != user):
                continue
            if job["state"] == "F" and not history:
                continue
            print(full_id(server, job["sequence"], array=bool(job.get("array"))))
    return 0


# ---------------------------------------------------------------------- the server

class Server:
    """Runs the jobs: the processes of running jobs live here, keyed by (sequence, index or None)."""

    def __init__(self, spool: Spool):
        self.spool = spool
        self.processes: dict[tuple[str, str | None], subprocess.Popen] = {}

    def serve(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: (self.stop(), sys.exit(0)))
        while True:
            server = self.spool.server
            with self.spool.locked() as state:
                self.tick(server, state)
            time.sleep(server["tick_s"])

    def stop(self) -> None:
        for process in self.processes.values():
            _kill_group(process, signal.SIGKILL)

    def tick(self, server: dict, state: dict) -> None:
        now = time.time()
        node_failed = (self.spool.folder / "node-fail").exists()
        rss = _rss_by_session() if self.processes and server["enforce_mem"] else {}
        for key, job in list(state["jobs"].items()):
            for index, unit in self._running(job):
                process = self.processes.get((key, index))
                if process is None:  # a server restarted under it: PBS would requeue it
                    unit.update(_queued_unit(), run_count=unit.get("run_count", 0))
                    continue
                self._watch(server, job, unit, process, now, node_failed, rss.get(process.pid, 0))
            _settle(server, state, job)
        if node_failed:
            (self.spool.folder / "node-fail").unlink()
        self._schedule(server, state, now)

    def _running(self, job: dict):
        if job.get("array"):
            return [(index, unit) for index, unit in job["subjobs"].items() if unit["state"] == "R"]
        return [(None, job)] if job["state"] == "R" else []

    def _watch(self, server, job, unit, process, now, node_failed, rss_kb) -> None:
        key = (str(job["sequence"]), unit.get("index"))
        unit["walltime_used"] = (now - unit["stime"]) * server["walltime_speed"]
        unit["mem_used_kb"] = max(unit.get("mem_used_kb", 0), rss_kb)
        if node_failed:
            _kill_group(process, signal.SIGKILL)
            process.wait()
            del self.processes[key]
            # node_fail_requeue: a rerunnable job goes back to the queue, under the same id.
            unit.update(state="Q", substate=10, comment="Job requeued, execution node down", stime=None,
                        exit_status=None, reason=None, not_before=now + 3 * server["tick_s"] + 1)
            return
        if not unit.get("reason"):
            if unit.get("delete"):
                unit["reason"] = "delete"
            elif unit["walltime_used"] > job["walltime_s"]:
                unit["reason"] = "walltime"
                _job_stderr(job, unit, f"=>> PBS: job killed: walltime {int(unit['walltime_used'])} exceeded limit "
                                       f"{job['walltime_s']}\n")
            elif server["enforce_mem"] and job["mem_kb"] and unit["mem_used_kb"] > job["mem_kb"]:
                unit["reason"] = "mem"
                _job_stderr(job, unit, f"=>> PBS: job killed: mem {unit['mem_used_kb']}kb exceeded limit "
                                       f"{job['mem_kb']}kb\n")
            if unit.get("reason"):
                unit["kill_at"] = now + server["kill_delay_s"]
                _kill_group(process, signal.SIGTERM)
        elif now >= unit["kill_at"]:
            _kill_group(process, signal.SIGKILL)
        code = process.poll()
        if code is None:
            return
        del self.processes[key]
        self._release(job)
        status = code if code >= 0 else SIGNAL_BASE - code
        reason = unit.get("reason")
        if reason == "walltime":
            status, ending, substate = KILL_WALLTIME, "exceeded resource walltime", FAILED
        elif reason == "mem":
            status, ending, substate = KILL_MEM, "exceeded resource mem", FAILED
        elif reason == "delete":
            ending, substate = "terminated", TERMINATED
        else:
            ending, substate = ("finished", FINISHED) if status == 0 else ("failed", FAILED)
        unit.update(state="X" if job.get("array") else "F", substate=substate, exit_status=status,
                    comment=f"{unit['comment']} and {ending}")
        if not server["history"]:
            if job.get("array"):
                unit["object"] = False   # no history: the subjob's object goes; only its X remains
            else:
                unit["purge"] = True

    def _schedule(self, server: dict, state: dict, now: float) -> None:
        used_cpus = sum(job["ncpus"] for job in self._all_running(state))
        used_gpus = sum(job["ngpus"] for job in self._all_running(state))
        for key in sorted(state["jobs"], key=int):
            job = state["jobs"][key]
            queued = [(index, unit) for index, unit in (job["subjobs"].items() if job.get("array") else [(None, job)])
                      if unit["state"] == "Q"]
            for index, unit in sorted(queued, key=lambda item: int(item[0] or 0)):
                if unit.get("not_before", 0) > now:  # its node is still down
                    continue
                if job.get("array") and job["array"]["max_run"] and \
                        sum(u["state"] == "R" for u in job["subjobs"].values()) >= job["array"]["max_run"]:
                    break
                if used_cpus + job["ncpus"] > server["ncpus"] or used_gpus + job["ngpus"] > server["ngpus"]:
                    short = "ngpus" if used_gpus + job["ngpus"] > server["ngpus"] else "ncpus"
                    unit["comment"] = f"Not Running: Insufficient amount of resource: {short}"
                    continue
                self._start(server, job, index, unit, now, used_gpus)
                used_cpus += job["ncpus"]
                used_gpus += job["ngpus"]

    def _all_running(self, state: dict) -> list[dict]:
        return [job for job in state["jobs"].values() for unit in _units(job) if unit["state"] == "R"]

    def _start(self, server, job, index, unit, now, used_gpus) -> None:
        sequence = str(job["sequence"])
        job_id = full_id(server, sequence, int(index) if index is not None else None)
        home = str(self.spool.folder / "home")  # the user's home on the compute node: a login shell reads it
        os.makedirs(home, exist_ok=True)
        environment = {"HOME": home, "USER": getpass.getuser(), "LOGNAME": getpass.getuser(), "SHELL": job["shell"],
                       "PATH": "/usr/local/bin:/usr/bin:/bin", "PBS_JOBID": job_id, "PBS_JOBNAME": job["name"],
                       "PBS_QUEUE": job["queue"], "PBS_O_WORKDIR": job["workdir"], "PBS_O_HOME": home,
                       "PBS_O_HOST": job["owner"].split("@")[1], "PBS_ENVIRONMENT": "PBS_BATCH",
                       "PBS_JOBDIR": home, "NCPUS": str(job["ncpus"]), "OMP_NUM_THREADS": str(job["ncpus"]),
                       "TMPDIR": str(self.spool.folder / "tmp")}
        if index is not None:
            environment.update(PBS_ARRAY_INDEX=str(index), PBS_ARRAY_ID=full_id(server, sequence, array=True))
        if job["ngpus"]:
            environment["CUDA_VISIBLE_DEVICES"] = ",".join(str(used_gpus + n) for n in range(job["ngpus"]))
        (self.spool.folder / "tmp").mkdir(exist_ok=True)
        output = open(_output_file(job, unit, "output"), "ab")
        error = output if job["join"] == "oe" else open(_output_file(job, unit, "error"), "ab")
        script = self.spool.folder / "scripts" / f"{sequence}.sh"
        # MoM runs the script with the job's shell as a login shell, in the home folder.
        process = subprocess.Popen(["-" + Path(job["shell"]).name, str(script)], executable=job["shell"], cwd=home,
                                   env=environment, stdin=subprocess.DEVNULL, stdout=output, stderr=error,
                                   start_new_session=True)
        output.close()
        if error is not output:
            error.close()
        self.processes[(sequence, index)] = process
        unit.update(state="R", substate=42, stime=now, pid=process.pid, object=True, index=index, jobdir=home,
                    run_count=unit.get("run_count", 0) + 1, reason=None, delete=False, mem_used_kb=0,
                    comment=time.strftime("Job run at %a %b %d at %H:%M", time.localtime(now))
                    + f" on ({server['name']}:ncpus={job['ncpus']})")
        if job.get("array"):
            job["state"], job["substate"] = "B", 70
        else:
            job["state"], job["substate"] = "R", 42

    def _release(self, job: dict) -> None:
        job["mtime"] = time.time()


def _settle(server: dict, state: dict, job: dict) -> None:
    """After a change: an array whose subjobs all ended finishes (or, without history, goes); a
    purged job goes."""
    key = str(job["sequence"])
    if job.get("array"):
        units = job["subjobs"].values()
        if all(unit["state"] in ("X", "F") for unit in units):
            if not server["history"]:
                state["jobs"].pop(key, None)
                return
            job["state"], job["substate"] = "F", FINISHED
            for unit in units:
                unit["state"] = "F" if unit["object"] else unit["state"]  # ended subjobs follow the array
        elif any(unit["state"] in ("R", "E", "X") for unit in units):
            job["state"], job["substate"] = "B", 70
    elif job.get("purge"):
        state["jobs"].pop(key, None)


def _output_file(job: dict, unit: dict, which: str) -> str:
    path = job[which]
    if path in ("/dev/null",):
        return path
    if not path:
        suffix = "o" if which == "output" else "e"
        index = f".{unit['index']}" if unit.get("index") is not None else ""
        path = os.path.join(job["workdir"], f"{job['name']}.{suffix}{job['sequence']}{index}")
    return path.split(":", 1)[-1]


def _job_stderr(job: dict, unit: dict, message: str) -> None:
    """MoM writes why it killed a job to the job's stderr."""
    path = _output_file(job, unit, "output" if job["join"] == "oe" else "error")
    with open(path, "a") as stream:
        stream.write(message)


def _kill_group(process: subprocess.Popen, number: int) -> None:
    try:
        os.killpg(process.pid, number)
    except ProcessLookupError:
        pass


def _rss_by_session() -> dict[int, int]:
    """The resident memory (kB) of every session's processes, as MoM adds up a job's (its session)."""
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    totals: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:  # /proc/PID/stat after the command's ")": state ppid pgrp session … rss (the 22nd)
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            totals[int(fields[3])] = totals.get(int(fields[3]), 0) + int(fields[21]) * page_kb
        except (OSError, IndexError, ValueError):
            continue
    return totals


COMMANDS = {"qsub": qsub, "qstat": qstat, "qdel": qdel, "qselect": qselect}


def main(command: str, spool_folder: str, argv: list[str]) -> int:
    spool = Spool(Path(spool_folder))
    if command == "serve":
        Server(spool).serve()
        return 0
    if command == "node-fail":
        (spool.folder / "node-fail").touch()
        return 0
    return COMMANDS[command](spool, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
