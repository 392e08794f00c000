"""Shared fixtures: real SQLite files, real ffmpeg videos, a real tiny DeepLabCut model."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import sshd
from dlcwatch.config import load_config
from dlcwatch.transport.ssh import SshHost

REPO = Path(__file__).resolve().parents[1]
HAVE_DLC = importlib.util.find_spec("deeplabcut") is not None
needs_dlc = pytest.mark.skipif(not HAVE_DLC, reason="DeepLabCut is not installed (scripts/install-dlc.sh)")


@pytest.fixture
def ssh_server(tmp_path):
    """A real sshd on 127.0.0.1 for this test (skips where none can run)."""
    with sshd.serving(tmp_path / "sshd") as server:
        yield server


@pytest.fixture
def ssh_host(ssh_server, tmp_path):
    """How dlcwatch reaches ssh_server: its key, its port, a known_hosts of the test's own."""
    host = SshHost(f"{ssh_server.user}@127.0.0.1", tmp_path / "control ü", identity_file=str(ssh_server.client_key),
                   port=ssh_server.port, options=("ConnectTimeout=5",))
    yield host
    host.close()  # the shared connection would outlive the test's sshd otherwise


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A real DeepLabCut project, trained once per test session on the CPU; its config.yaml."""
    if not HAVE_DLC:
        pytest.skip("DeepLabCut is not installed (scripts/install-dlc.sh)")
    folder = tmp_path_factory.mktemp("tiny-model")
    completed = subprocess.run([sys.executable, "-m", "dlcwatch.demo.tinydlc", str(folder), "--epochs", "10"],
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return Path(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def tiny_ma_model(tmp_path_factory) -> Path:
    """A real two-animal DeepLabCut project, trained once per test session on the CPU; its config.yaml."""
    if not HAVE_DLC:
        pytest.skip("DeepLabCut is not installed (scripts/install-dlc.sh)")
    folder = tmp_path_factory.mktemp("tiny-ma-model")
    completed = subprocess.run([sys.executable, "-m", "dlcwatch.demo.tinymadlc", str(folder)],
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return Path(completed.stdout.strip().splitlines()[-1])


# The TensorFlow-engine job environment (deeplabcut[tf]: TensorFlow 2.15 needs numpy < 2, so it cannot
# share the daemon's): scripts/install-dlc.sh --tf .venv-tf, which .ci/run builds.
TF_PYTHON = Path(os.environ.get("DLCWATCH_TF_PYTHON") or REPO / ".venv-tf" / "bin" / "python")
TF_MODEL_ITERATIONS = 300  # tracks the synthetic dots to within about 10 px; ~40 s on 2 cores


@pytest.fixture(scope="session")
def tf_python() -> Path:
    """The interpreter of an environment with DeepLabCut's TensorFlow engine. Skips where there is none,
    saying how to make one; fails instead under CI (which builds it), so CI never skips these tests."""
    problem = ""
    if not os.access(TF_PYTHON, os.X_OK):
        problem = f"no TensorFlow-engine environment at {TF_PYTHON}"
    else:
        found = subprocess.run([str(TF_PYTHON), "-c", "import importlib.util as u; "
                                "print(' '.join(m for m in ('tensorflow', 'deeplabcut') if not u.find_spec(m)))"],
                               capture_output=True, text=True, timeout=60)
        if found.returncode != 0 or found.stdout.strip():
            problem = f"{TF_PYTHON} lacks {found.stdout.strip() or 'a working Python: ' + found.stderr[-300:]}"
    if problem:
        reason = (f"{problem}: make it with `scripts/install-dlc.sh --tf .venv-tf` (about 8 GB), or set "
                  "DLCWATCH_TF_PYTHON to the python of an environment with deeplabcut[tf]==3.0.2")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return TF_PYTHON


@pytest.fixture(scope="session")
def tiny_tf_model(tf_python, tmp_path_factory) -> Path:
    """A real TensorFlow-engine DeepLabCut project, trained once per test session on the CPU in the
    TensorFlow environment, with every network attempt refused and written to network-attempts.log
    beside the project (tests/no_network.py); its config.yaml."""
    folder = tmp_path_factory.mktemp("tiny-tf-model")
    command = [str(tf_python), str(REPO / "tests" / "no_network.py"), str(folder / "network-attempts.log"),
               "-m", "dlcwatch.demo.tinydlc_tf", str(folder / "model"), "--iterations", str(TF_MODEL_ITERATIONS)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return Path(completed.stdout.strip().splitlines()[-1])


def write_config(folder: Path, model_config: Path | str, **sections) -> Path:
    """Write a config for a lab rooted in `folder` (videos/, results/, staging/, state/); return its path."""
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    config = {
        "watch": {"roots": [{"path": str(folder / "videos")}], "settle_s": 2.0, "rescan_interval_s": 5.0},
        "state": {"database": str(folder / "state" / "dlcwatch.db")},
        "output": {"root": str(folder / "results")},
        "staging": {"dir": str(folder / "staging")},
        "model": {"config": str(model_config), "device": "cpu"},
        "executor": {"kind": "local", "videos_per_job": 4, "retry_backoff_s": 0.0},
        "daemon": {"tick_s": 0.2},
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


@pytest.fixture
def lab(tmp_path):
    """A lab folder with a config whose model path exists but is not a trained model (no DLC needed)."""
    fake_model = tmp_path / "model" / "config.yaml"
    fake_model.parent.mkdir()
    fake_model.write_text("Task: none\n")
    path = write_config(tmp_path, fake_model)
    return load_config(path)


@pytest.fixture(autouse=True)
def _no_stray_files(tmp_path, monkeypatch):
    """Run every test from its tmp folder, so a name like '$(touch x)' reaching a shell would show."""
    monkeypatch.chdir(tmp_path)
    yield
    assert not (tmp_path / "x").exists(), "a file name reached a shell"


def cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `dlcwatch` command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "dlcwatch", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
