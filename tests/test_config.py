from pathlib import Path

import pytest
import yaml

from dlcwatch.config import ConfigError, example_yaml, find_config_path, load_config, validate

REPO = Path(__file__).resolve().parents[1]


def test_committed_example_matches_the_schema():
    committed = (REPO / "config.example.yaml").read_text()
    assert committed == example_yaml(), "config.example.yaml drifted: run `dlcwatch config example > config.example.yaml`"


def test_example_is_valid_apart_from_lab_paths(tmp_path):
    config = validate(yaml.safe_load(example_yaml()), base_dir=tmp_path, check_paths=False)
    assert config.watch.roots[0].path == "/data/behavior/raw"
    assert config.executor.local.max_parallel == 1


def test_every_problem_is_reported_at_once(tmp_path):
    data = {"watch": {"roots": [{"path": 3, "polling": "sometimes"}], "setle_s": 3},
            "model": {"batch_size": 0, "filter": {"enabled": "yes"}}}
    with pytest.raises(ConfigError) as caught:
        validate(data, base_dir=tmp_path)
    problems = caught.value.problems
    assert "watch.setle_s: unknown key; did you mean 'settle_s'?" in problems
    assert "watch.roots[0].path: expected a string, got int 3" in problems
    assert any(p.startswith("watch.roots[0].polling: must be one of auto, on, off") for p in problems)
    assert any(p.startswith("output.root: required") for p in problems)
    assert any(p.startswith("model.config: required") for p in problems)
    assert "model.batch_size: must be at least 1, got 0" in problems
    assert any(p.startswith("model.filter.enabled: expected true or false") for p in problems)
    assert len(problems) == 7


def test_a_cluster_scratch_needs_a_login_node_and_an_absolute_path(tmp_path):
    base = {"watch": {"roots": [{"path": "/v"}]}, "output": {"root": "/o"}, "model": {"config": "/m/config.yaml"}}
    cases = [
        ({"scratch": "/scratch/lab"}, "executor.slurm.scratch: needs executor.slurm.host"),
        ({"host": "lab@login", "scratch": "scratch/lab"}, "executor.slurm.scratch: 'scratch/lab' must be an absolute"),
        ({"host": "-oProxyCommand=x", "scratch": ""}, "executor.slurm.host: '-oProxyCommand=x' is not a login node"),
    ]
    for slurm, expected in cases:
        with pytest.raises(ConfigError) as caught:
            validate({**base, "executor": {"kind": "slurm", "slurm": slurm}}, base_dir=tmp_path, check_paths=False)
        assert any(problem.startswith(expected) for problem in caught.value.problems), caught.value.problems
    fine = validate({**base, "executor": {"kind": "slurm", "slurm": {"host": "lab@login", "scratch": "/scratch/l"}}},
                    base_dir=tmp_path, check_paths=False)
    assert fine.executor.slurm.ssh.port == 22 and fine.executor.slurm.scratch_quota_gb == 0


def test_paths_are_checked_and_relative_ones_resolved(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text("watch: {roots: [{path: videos}]}\noutput: {root: out}\nmodel: {config: m/config.yaml}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any("videos does not exist (is the share mounted?)" in p for p in caught.value.problems)
    assert any(p.startswith("model.config:") for p in caught.value.problems)
    (tmp_path / "videos").mkdir()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.yaml").write_text("x: 1")
    config = load_config(path)
    assert config.output.root == str(tmp_path / "out")
    assert config.state.database == str(tmp_path / "state" / "dlcwatch.db")
    assert config.watch.roots[0].include[0] == "*.mp4"


def test_config_path_from_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("DLCWATCH_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="--config PATH or set DLCWATCH_CONFIG"):
        find_config_path(None)
    monkeypatch.setenv("DLCWATCH_CONFIG", str(tmp_path / "c.yaml"))
    assert find_config_path(None) == tmp_path / "c.yaml"
    assert find_config_path("other.yaml") == Path("other.yaml")


def test_unreadable_yaml_is_one_clear_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("watch: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
