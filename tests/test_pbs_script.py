"""The PBS job script renderer: golden files, and bash reading back what the script holds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cluster_fixtures import FULL_JOB_SIDE, matches_golden, script_submission as submission
from dlcwatch.executors.base import ARRAY_TASK_ID, Submission
from dlcwatch.executors.pbs.script import format_size, format_walltime, render_pbs_script
from pbs_fixtures import pbs_settings


def full_settings(**values):
    return pbs_settings(
        queue="gpuq", account="lab-smith", project="smithlab", time_limit_min=90, cpus=6, mem_gb=24.0, gpus=1,
        gpu_resource="ngpus", chunk_resources="gpu_model=a100",
        extra_qsub=["-m a -M lab@example.org", "#PBS -l place=excl"], **FULL_JOB_SIDE, **values)


def array_submission(folder: str = "/lab/jobs/array40") -> Submission:
    work = Path(folder)
    return Submission(40, work / f"spec-{ARRAY_TASK_ID}.json", work / f"task-{ARRAY_TASK_ID}.log", work, {})


def test_the_script_matches_the_golden_file():
    assert matches_golden(render_pbs_script(full_settings(), submission()), "pbs_basic.sh"), \
        "run with DLCWATCH_UPDATE_GOLDEN=1 to accept a deliberate change"


def test_an_array_script_matches_the_golden_file_and_numbers_subjobs_from_zero():
    script = render_pbs_script(pbs_settings(gpus=0, cpus=1, mem_gb=2.0), array_submission(), array_size=25,
                               array_throttle=5)
    assert matches_golden(script, "pbs_array.sh"), "run with DLCWATCH_UPDATE_GOLDEN=1 to accept a deliberate change"
    assert "#PBS -J 0-24%5\n" in script and "#PBS -l select=1:ncpus=1:mem=2gb\n" in script
    assert "ngpus" not in script
    unthrottled = render_pbs_script(pbs_settings(), array_submission(), array_size=3)
    assert "#PBS -J 0-2\n" in unthrottled


def test_the_defaults_ask_for_what_the_schema_says():
    script = render_pbs_script(pbs_settings(), submission())
    assert "#PBS -l select=1:ncpus=4:ngpus=1:mem=16gb\n" in script and "#PBS -l walltime=02:00:00\n" in script
    assert "#PBS -N dlcwatch-12\n" in script and "#PBS -r y\n" in script and "#PBS -o /dev/null\n" in script
    for absent in ("-q ", "-A ", "-P ", "-J ", "apptainer"):
        assert absent not in script
    assert script.rstrip().endswith("exec python -m dlcwatch.worker '/scratch/dlcwatch/jobs/job12/spec.json'")
    assert "cd '/scratch/dlcwatch/jobs/job12' || exit 1" in script


def test_retries_and_the_cpu_fallback_override_the_settings():
    script = render_pbs_script(pbs_settings(), submission(mem_mb=1500, time_min=3000, cpus=2))
    assert "#PBS -l select=1:ncpus=2:ngpus=1:mem=1500mb\n" in script and "#PBS -l walltime=50:00:00\n" in script
    fallback = render_pbs_script(pbs_settings(queue="gpuq"), submission(queue="cpuq", gpus=0))
    assert "#PBS -q cpuq\n" in fallback and "ngpus" not in fallback
    assert "mem=" not in render_pbs_script(pbs_settings(mem_gb=0.0), submission())


def test_what_qsub_would_misread_is_refused():
    with pytest.raises(ValueError, match="unknown resources partition"):
        render_pbs_script(pbs_settings(), submission(partition="cpu"))
    with pytest.raises(ValueError, match="executor.pbs.queue 'gpu q' cannot go on a #PBS line"):
        render_pbs_script(pbs_settings(queue="gpu q"), submission())
    with pytest.raises(ValueError, match="executor.pbs.account"):
        render_pbs_script(pbs_settings(account='lab"x'), submission())
    with pytest.raises(ValueError, match="executor.pbs.chunk_resources"):
        render_pbs_script(pbs_settings(chunk_resources="host=a b"), submission())
    with pytest.raises(ValueError, match="line break"):
        render_pbs_script(pbs_settings(), submission(folder="/lab/jobs\n#PBS -q evil"))
    with pytest.raises(ValueError, match="a job array needs"):
        render_pbs_script(pbs_settings(), submission(), array_size=3)
    with pytest.raises(ValueError, match="no array"):
        render_pbs_script(pbs_settings(), submission(spec=f"spec-{ARRAY_TASK_ID}.json"))
    with pytest.raises(ValueError, match="at least two subjobs"):
        render_pbs_script(pbs_settings(), array_submission(), array_size=1)
    with pytest.raises(ValueError, match="at least one minute"):
        format_walltime(0)
    assert format_walltime(90) == "01:30:00" and format_walltime(2880) == "48:00:00"
    assert format_size(16384) == "16gb" and format_size(1500) == "1500mb"


def test_bash_reads_back_every_path_exactly(tmp_path):
    """The script, with the worker swapped for `printf`, run by bash as PBS would (from the home
    folder, PBS_ARRAY_INDEX set): the paths arrive whole, nothing in them runs, subjob i reads
    spec-i and logs to task-i, and the worker runs in the job's folder."""
    folder = tmp_path / "lab's \"videos\" $(touch x) `touch y` * #1 \\ %j: [0]"
    folder.mkdir()
    settings = pbs_settings(python="printf", gpus=0)
    array = Submission(3, folder / f"spec-{ARRAY_TASK_ID}.json", folder / f"task-{ARRAY_TASK_ID}.log", folder, {})
    script = render_pbs_script(settings, array, array_size=2).replace(" -m dlcwatch.worker ", " '%s|' ")
    script = script.replace("exec printf", "printf '%s|' \"$PWD\"; exec printf")
    (tmp_path / "job.pbs").write_text(script)
    home = tmp_path / "home"
    home.mkdir()
    for index in (0, 1):
        completed = subprocess.run(["bash", str(tmp_path / "job.pbs")], capture_output=True, text=True, cwd=home,
                                   env={"PATH": os.environ["PATH"], "PBS_ARRAY_INDEX": str(index)}, timeout=30)
        assert completed.returncode == 0, completed.stderr
        assert (folder / f"task-{index}.log").read_text() == f"{folder}|{folder}/spec-{index}.json|"
    assert not any(path.name in ("x", "y") for path in tmp_path.rglob("*"))
