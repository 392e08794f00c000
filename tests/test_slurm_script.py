"""The sbatch script renderer: a golden file, and the shell reading back what the script holds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dlcwatch.executors.slurm.script import ARRAY_TASK_ID, format_memory, format_minutes, render_sbatch_script
from cluster_fixtures import FULL_JOB_SIDE, matches_golden, script_submission as submission
from slurm_fixtures import slurm_settings


def full_settings(**values):
    return slurm_settings(
        partition="gpu", account="lab-smith", qos="normal", time_limit_min=90, cpus=6, mem_gb=24.0, gpus=1,
        gpu_type="a100", constraint="avx2&cuda12", extra_sbatch=["--mail-type=FAIL", "#SBATCH --exclude=node13"],
        **FULL_JOB_SIDE, **values)


def test_the_script_matches_the_golden_file():
    assert matches_golden(render_sbatch_script(full_settings(), submission()), "sbatch_basic.sh"), \
        "run with DLCWATCH_UPDATE_GOLDEN=1 to accept a deliberate change"


def test_the_defaults_ask_for_what_the_schema_says():
    script = render_sbatch_script(slurm_settings(), submission())
    assert "#SBATCH --time=02:00:00\n" in script and "#SBATCH --mem=16G\n" in script
    assert "#SBATCH --gres=gpu:1\n" in script and "#SBATCH --cpus-per-task=4\n" in script
    for absent in ("--partition", "--account", "--qos", "--constraint", "--array", "apptainer"):
        assert absent not in script
    assert script.rstrip().endswith("exec python -m dlcwatch.worker '/scratch/dlcwatch/jobs/job12/spec.json'")


def test_resources_of_a_retry_override_the_settings():
    script = render_sbatch_script(slurm_settings(gpu_option="gpus"), submission(time_min=3000, mem_mb=1500, gpus=2))
    assert "#SBATCH --time=2-02:00:00\n" in script and "#SBATCH --mem=1500M\n" in script
    assert "#SBATCH --gpus=2\n" in script and "--gres" not in script
    no_gpu = render_sbatch_script(slurm_settings(gpus=0, mem_gb=0.0), submission())
    assert "gpu" not in no_gpu and "--mem" not in no_gpu
    with pytest.raises(ValueError, match="unknown resources nodes"):
        render_sbatch_script(slurm_settings(), submission(nodes=2))
    # The CPU fallback: another partition, no GPUs, whatever the settings say.
    fallback = render_sbatch_script(slurm_settings(partition="gpu"), submission(partition="cpu queue", gpus=0))
    assert '#SBATCH --partition="cpu queue"\n' in fallback and "gpu" not in fallback.replace("dlcwatch", "")


def test_time_and_memory_formats():
    assert [format_minutes(m) for m in (1, 59, 90, 1440, 1501)] == \
        ["00:01:00", "00:59:00", "01:30:00", "1-00:00:00", "1-01:01:00"]
    with pytest.raises(ValueError):
        format_minutes(0)
    assert format_memory(16384) == "16G" and format_memory(1500) == "1500M"


NASTY = "/tmp/dlc jobs/it's \"$(touch x)\" `touch y` %j #5 ünï\tcode"


def run_body(script: str, tmp_path: Path, **env) -> list[str]:
    """Run the script with bash after putting `printf` in front of the worker: its argv, one per line.
    The #SBATCH lines are comments to bash, as on a compute node."""
    script = script.replace("exec ", "exec printf '%s\\n' ", 1)
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    completed = subprocess.run(["bash", str(path)], capture_output=True, text=True, cwd=tmp_path,
                               env={**os.environ, **env}, timeout=30)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.splitlines()


def test_the_shell_gets_the_spec_path_back_exactly(tmp_path):
    script = render_sbatch_script(slurm_settings(python="python3"), submission(NASTY))
    assert run_body(script, tmp_path) == ["python3", "-m", "dlcwatch.worker", f"{NASTY}/spec.json"]
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_the_log_path_is_one_quoted_sbatch_value():
    script = render_sbatch_script(slurm_settings(), submission(NASTY))
    line = next(line for line in script.splitlines() if line.startswith("#SBATCH --output="))
    # sbatch reads: quotes group, a backslash escapes, % starts a pattern (%% is a percent sign)
    assert line == '#SBATCH --output="/tmp/dlc jobs/it\'s \\"$(touch x)\\" `touch y` %%j #5 ünï\tcode/worker.log"'


def test_paths_that_sbatch_cannot_take_are_refused():
    with pytest.raises(ValueError, match="line break"):
        render_sbatch_script(slurm_settings(), submission("/tmp/two\nlines"))
    with pytest.raises(ValueError, match="backslash"):
        render_sbatch_script(slurm_settings(), submission("/tmp/back\\slash"))
    with pytest.raises(ValueError, match="line break"):
        render_sbatch_script(slurm_settings(extra_sbatch=["--exclusive\n--x"]), submission())


def test_settings_with_blanks_or_hashes_are_quoted_for_sbatch():
    script = render_sbatch_script(slurm_settings(partition="gpu", constraint="big mem#1", account='a"b'),
                                  submission())
    assert '#SBATCH --constraint="big mem#1"\n' in script and '#SBATCH --account="a\\"b"\n' in script
    assert "#SBATCH --partition=gpu\n" in script


def test_a_job_array_takes_its_spec_and_log_by_task(tmp_path):
    sub = submission(NASTY, spec=f"spec-{ARRAY_TASK_ID}.json", log=f"worker-{ARRAY_TASK_ID}.log")
    script = render_sbatch_script(slurm_settings(python="python3"), sub, array_size=10, array_throttle=3)
    assert "#SBATCH --array=0-9%3\n" in script
    assert '%%j #5 ünï\tcode/worker-%a.log"\n' in script
    assert run_body(script, tmp_path, SLURM_ARRAY_TASK_ID="7")[-1] == f"{NASTY}/spec-7.json"
    unthrottled = render_sbatch_script(slurm_settings(), sub, array_size=4)
    assert "#SBATCH --array=0-3\n" in unthrottled
    with pytest.raises(ValueError, match="one file per task"):
        render_sbatch_script(slurm_settings(), submission(), array_size=2)
