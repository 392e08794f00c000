"""The README's first command: `dlcwatch demo DIR` builds the example and runs it end to end."""

import shutil
import subprocess
import sys

from conftest import cli, needs_dlc

pytestmark = needs_dlc


def test_demo_delivers_every_video_and_status_says_so(tiny_model, tmp_path):
    demo = tmp_path / "demo"
    # The session's freshly trained model stands in for the demo's own training, which builds
    # the very same project with the same code (tinydlc), to keep the suite short.
    shutil.copytree(tiny_model.parent, demo / "model" / tiny_model.parent.name)
    completed = cli("demo", str(demo), timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "3 video(s): 3 done" in completed.stdout
    status = cli("status", "--config", str(demo / "config.yaml"))
    assert "3 video(s): 3 done" in status.stdout
    manifests = sorted(demo.glob("results/**/manifest.json"))
    assert len(manifests) == 3
    for manifest in manifests:
        assert list(manifest.parent.glob("*DLC_*.h5")), manifest.parent
    assert (demo / "results" / "souris_été_ü" / "manifest.json").exists()


def test_the_worker_imports_nothing_the_daemon_alone_needs():
    code = ("import sys, dlcwatch.worker.job; "
            "bad = sorted(m for m in ('watchdog', 'dlcwatch.daemon', 'dlcwatch.store', 'dlcwatch.config') "
            "if m in sys.modules); print(bad); sys.exit(1 if bad else 0)")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout + completed.stderr
