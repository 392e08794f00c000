"""`executor.kind: pbs` in the configuration: the section, its checks with their reasons, and the executor it makes."""

import pytest

from dlcwatch.config import ConfigError, validate
from dlcwatch.executors import make_executor
from dlcwatch.executors.pbs.executor import PbsExecutor
from dlcwatch.transport.job_files import StagedFiles, cluster_settings

BASE = {"watch": {"roots": [{"path": "/v"}]}, "output": {"root": "/o"}, "model": {"config": "/m/config.yaml"}}


def test_the_pbs_section_has_its_defaults_and_makes_the_pbs_executor(tmp_path):
    config = validate({**BASE, "staging": {"dir": str(tmp_path / "staging")},
                       "executor": {"kind": "pbs", "pbs": {"queue": "gpuq", "array_throttle": 4}}},
                      base_dir=tmp_path, check_paths=False)
    pbs = config.executor.pbs
    assert pbs.queue == "gpuq" and pbs.gpu_resource == "ngpus" and pbs.cpu_fallback.queue == ""
    assert pbs.commands_dir == "" and pbs.time_limit_min == 120 and pbs.array_tasks == 100
    assert cluster_settings(config) is pbs
    executor = make_executor(config)
    assert isinstance(executor, PbsExecutor) and executor.settings.array_throttle == 4
    assert executor.poll_interval_s == 30 and executor.name == "pbs"


def test_bad_pbs_settings_are_refused_with_the_reason(tmp_path):
    cases = [
        ({"scratch": "/scratch/lab"}, "executor.pbs.scratch: needs executor.pbs.host"),
        ({"host": "lab@login", "scratch": "scratch/lab"}, "executor.pbs.scratch: 'scratch/lab' must be an absolute"),
        ({"host": "-oProxyCommand=x"}, "executor.pbs.host: '-oProxyCommand=x' is not a login node"),
        ({"array_throttle": -1}, "executor.pbs.array_throttle"),
        ({"cpus": 0}, "executor.pbs.cpus"),
        ({"queue": ["gpuq"]}, "executor.pbs.queue"),
        ({"qos": "high"}, "executor.pbs.qos"),  # a SLURM option: PBS has none
    ]
    for pbs, expected in cases:
        with pytest.raises(ConfigError) as caught:
            validate({**BASE, "executor": {"kind": "pbs", "pbs": pbs}}, base_dir=tmp_path, check_paths=False)
        assert any(problem.startswith(expected) for problem in caught.value.problems), caught.value.problems


def test_without_qsub_here_or_a_login_node_the_check_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no qsub anywhere
    (tmp_path / "videos").mkdir()
    model = tmp_path / "config.yaml"
    model.write_text("Task: x\n")
    settings = {"watch": {"roots": [{"path": str(tmp_path / "videos")}]}, "output": {"root": str(tmp_path / "o")},
                "model": {"config": str(model)}}
    with pytest.raises(ConfigError) as caught:
        validate({**settings, "executor": {"kind": "pbs", "pbs": {"commands_dir": "/opt/pbs/bin"}}},
                 base_dir=tmp_path)
    assert "executor.kind: 'pbs' needs the PBS client tools (qsub, qstat, qselect, qdel) on this machine (in " \
           "executor.pbs.commands_dir /opt/pbs/bin), or executor.pbs.host to run them on the cluster's login node " \
           "over ssh" in caught.value.problems
    (tmp_path / "qsub").write_text("#!/bin/sh\n")
    (tmp_path / "qsub").chmod(0o755)
    with pytest.raises(ConfigError) as caught:  # ffprobe is missing too, but qsub is found now
        validate({**settings, "executor": {"kind": "pbs", "pbs": {"commands_dir": str(tmp_path)}}}, base_dir=tmp_path)
    assert not [problem for problem in caught.value.problems if "qsub" in problem]


def test_a_pbs_scratch_goes_through_the_login_node(tmp_path):
    remote = validate({**BASE, "staging": {"dir": str(tmp_path / "staging")},
                       "executor": {"kind": "pbs", "pbs": {"host": "lab@login", "scratch": "/scratch/l"}}},
                      base_dir=tmp_path, check_paths=False)
    executor = make_executor(remote)
    assert isinstance(executor.files, StagedFiles)  # jobs see the cluster's scratch, not our paths
    assert executor.files.job_path(tmp_path / "staging" / "jobs" / "job3") == "/scratch/l/jobs/job3"
