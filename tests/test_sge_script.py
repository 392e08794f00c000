"""The Grid Engine job script renderer: golden files, and bash reading back what the script holds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dlcwatch.executors.base import ARRAY_TASK_ID, Submission
from dlcwatch.executors.sge.script import format_walltime, render_qsub_script
from cluster_fixtures import FULL_JOB_SIDE, matches_golden, script_submission as submission
from sge_fixtures import sge_settings

def full_settings(**values):
    return sge_settings(
        queue="gpu.q", project="smithlab", parallel_environment="smp", time_limit_min=90, cpus=6, mem_gb=24.0,
        memory_resource="h_vmem", gpus=1, gpu_resource="gpu", extra_qsub=["-m a -M lab@example.org", "#$ -l h=!node13"],
        **FULL_JOB_SIDE, **values)


def test_the_script_matches_the_golden_file():
    assert matches_golden(render_qsub_script(full_settings(), submission()), "qsub_basic.sh"), \
        "run with DLCWATCH_UPDATE_GOLDEN=1 to accept a deliberate change"


def test_an_array_script_matches_the_golden_file_and_numbers_tasks_from_one():
    array = Submission(40, Path("/lab/jobs/array40/spec-" + ARRAY_TASK_ID + ".json"),
                       Path("/lab/jobs/array40/task-" + ARRAY_TASK_ID + ".log"), Path("/lab/jobs/array40"), {})
    script = render_qsub_script(sge_settings(gpus=0, cpus=1, mem_gb=2.0), array, array_size=25, array_throttle=5)
    assert matches_golden(script, "qsub_array.sh"), "run with DLCWATCH_UPDATE_GOLDEN=1 to accept a deliberate change"
    assert "#$ -t 1-25\n#$ -tc 5\n" in script and "-pe" not in script  # one CPU: no parallel environment


def test_the_defaults_ask_for_what_the_schema_says():
    script = render_qsub_script(sge_settings(), submission())
    assert "#$ -l h_rt=2:00:00\n" in script and "#$ -l mem_free=16G\n" in script
    assert "#$ -l gpu=1\n" in script and "#$ -pe smp 4\n" in script
    for absent in ("-q ", "-P ", "-t ", "-tc", "apptainer", "h_vmem"):
        assert absent not in script
    assert script.rstrip().endswith("exec python -m dlcwatch.worker '/scratch/dlcwatch/jobs/job12/spec.json'")


def test_h_vmem_is_asked_per_slot_and_retries_override_the_settings():
    script = render_qsub_script(sge_settings(memory_resource="h_vmem", cpus=3), submission(mem_mb=1500, time_min=3000))
    assert "#$ -l h_vmem=500M\n" in script and "#$ -l h_rt=50:00:00\n" in script
    no_pe = render_qsub_script(sge_settings(memory_resource="h_vmem", cpus=3, parallel_environment=""),
                               submission(mem_mb=2048))
    assert "#$ -l h_vmem=2G\n" in no_pe and "-pe" not in no_pe  # one slot: the whole amount
    # The CPU fallback: another queue, no GPUs, whatever the settings say.
    fallback = render_qsub_script(sge_settings(queue="gpu.q"), submission(queue="cpu.q", gpus=0))
    assert "#$ -q cpu.q\n" in fallback and "gpu" not in fallback
    assert "mem_free" not in render_qsub_script(sge_settings(mem_gb=0.0), submission())


def test_what_qsub_would_misread_is_refused():
    with pytest.raises(ValueError, match="unknown resources partition"):
        render_qsub_script(sge_settings(), submission(partition="cpu"))
    with pytest.raises(ValueError, match="executor.sge.queue 'gpu q' cannot go on a #\\$ line"):
        render_qsub_script(sge_settings(queue="gpu q"), submission())
    with pytest.raises(ValueError, match="executor.sge.project"):
        render_qsub_script(sge_settings(project='lab"x'), submission())
    with pytest.raises(ValueError, match="line break"):
        render_qsub_script(sge_settings(), submission(folder="/lab/jobs\n#$ -q evil"))
    with pytest.raises(ValueError, match="a job array needs"):
        render_qsub_script(sge_settings(), submission(), array_size=3)
    with pytest.raises(ValueError, match="no array"):
        render_qsub_script(sge_settings(), submission(spec=f"spec-{ARRAY_TASK_ID}.json"))
    with pytest.raises(ValueError, match="at least one minute"):
        format_walltime(0)
    assert format_walltime(90) == "1:30:00" and format_walltime(2880) == "48:00:00"


def test_bash_reads_back_every_path_exactly(tmp_path):
    """The script, with the worker swapped for `printf`, run by bash: the paths it passes arrive
    whole, nothing in them runs, and an array task i+1 reads spec-i and logs to task-i."""
    folder = tmp_path / "lab's \"videos\" $(touch x) `touch y` * #1 \\ %j"
    folder.mkdir()
    settings = sge_settings(python="printf", gpus=0)
    array = Submission(3, folder / f"spec-{ARRAY_TASK_ID}.json", folder / f"task-{ARRAY_TASK_ID}.log", folder, {})
    script = render_qsub_script(settings, array, array_size=2).replace(" -m dlcwatch.worker ", " '%s|' ")
    (tmp_path / "job.qsub").write_text(script)
    for sge_task in (1, 2):
        completed = subprocess.run(["bash", str(tmp_path / "job.qsub")], capture_output=True, text=True, cwd=tmp_path,
                                   env={"PATH": os.environ["PATH"], "SGE_TASK_ID": str(sge_task)}, timeout=30)
        assert completed.returncode == 0, completed.stderr
        assert (folder / f"task-{sge_task - 1}.log").read_text() == f"{folder}/spec-{sge_task - 1}.json|"
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists() and not (folder / "x").exists()
