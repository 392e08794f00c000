"""`executor.kind: sge` in the configuration: the section, its checks, and the executor it makes."""

import pytest

from dlcwatch.transport.job_files import StagedFiles, cluster_settings
from dlcwatch.config import ConfigError, validate
from dlcwatch.executors import make_executor
from dlcwatch.executors.sge.executor import SgeExecutor

BASE = {"watch": {"roots": [{"path": "/v"}]}, "output": {"root": "/o"}, "model": {"config": "/m/config.yaml"}}


def test_the_sge_section_has_its_defaults_and_makes_the_grid_engine_executor(tmp_path):
    config = validate({**BASE, "staging": {"dir": str(tmp_path / "staging")},
                       "executor": {"kind": "sge", "sge": {"queue": "gpu.q", "array_throttle": 4}}},
                      base_dir=tmp_path, check_paths=False)
    assert config.executor.sge.queue == "gpu.q" and config.executor.sge.memory_resource == "mem_free"
    assert config.executor.sge.cpu_fallback.queue == "" and config.executor.sge.parallel_environment == "smp"
    assert cluster_settings(config) is config.executor.sge
    executor = make_executor(config)
    assert isinstance(executor, SgeExecutor) and executor.settings.array_throttle == 4 and executor.poll_interval_s == 30


def test_a_grid_engine_scratch_needs_a_login_node_and_goes_through_it(tmp_path):
    cases = [
        ({"scratch": "/scratch/lab"}, "executor.sge.scratch: needs executor.sge.host"),
        ({"host": "lab@login", "scratch": "scratch/lab"}, "executor.sge.scratch: 'scratch/lab' must be an absolute"),
        ({"host": "-oProxyCommand=x"}, "executor.sge.host: '-oProxyCommand=x' is not a login node"),
        ({"memory_resource": "rss"}, "executor.sge.memory_resource: must be one of mem_free, h_vmem"),
    ]
    for sge, expected in cases:
        with pytest.raises(ConfigError) as caught:
            validate({**BASE, "executor": {"kind": "sge", "sge": sge}}, base_dir=tmp_path, check_paths=False)
        assert any(problem.startswith(expected) for problem in caught.value.problems), caught.value.problems
    remote = validate({**BASE, "staging": {"dir": str(tmp_path / "staging")},
                       "executor": {"kind": "sge", "sge": {"host": "lab@login", "scratch": "/scratch/l"}}},
                      base_dir=tmp_path, check_paths=False)
    executor = make_executor(remote)
    assert isinstance(executor.files, StagedFiles)  # jobs see the cluster's scratch, not our paths
    assert executor.files.job_path(tmp_path / "staging" / "jobs" / "job3") == "/scratch/l/jobs/job3"
