"""A scratch folder on a cluster whose login node is another machine, reached over ssh + rsync.

Layout under `root` on the cluster:

    videos/        staged inputs, video<id>.<ext> (rsync's partial copies in videos/.partial/)
    jobs/<name>/   one folder per job or array, named as the local jobs folder's sub-folders
    model/         the DeepLabCut project (without its videos and labels), behavior models

Remote shell commands quote every path with shlex.quote; rsync runs with --protect-args, so no
name is handed to a shell there. Each method raises TransferError with what a person can do.
"""

from __future__ import annotations

import posixpath
import shlex
from pathlib import Path
from typing import Callable

from dlcwatch.errors import TransferError
from dlcwatch.jobs.spec import staged_name
from dlcwatch.transport.ssh import SshHost, check_output

PARTIAL_DIR = ".partial"  # inside videos/: an interrupted copy waits here and is resumed
# Large parts of a DeepLabCut project that analysis never reads.
MODEL_EXCLUDES = ("/videos/", "/labeled-data/", "/evaluation-results*")
# Never brought back from a job folder: the project view (links to the model) and the staged
# input link or copy at the top of each video folder; results live in video<id>/output/.
PULL_EXCLUDES = ("/*/project/", "/*/video*/video*.*")
FILTER_CHARACTERS = set("*?[\\\n\r\0")


class ClusterScratch:
    """The cluster-side scratch folder `root` of one host, mirroring a local jobs folder."""

    def __init__(self, ssh: SshHost, root: str, local_jobs_dir: Path):
        if not root.startswith("/") or posixpath.normpath(root) in ("/", "//"):
            raise ValueError(f"the cluster scratch folder must be an absolute path below /, not {root!r}")
        self.ssh = ssh
        self.root = posixpath.normpath(root)
        self.local_jobs_dir = Path(local_jobs_dir)
        self.videos = f"{self.root}/videos"
        self.jobs = f"{self.root}/jobs"
        self.model = f"{self.root}/model"

    # ------------------------------------------------------------------ videos

    def remote_video_path(self, video_id: int, source: str) -> str:
        """Given a video id and its source path, return where it is staged on the cluster."""
        return f"{self.videos}/{staged_name(video_id, source)}"

    def stage_video(self, source: Path, video_id: int, sha256: str,
                    progress: Callable[[int], None] | None = None) -> str:
        """Given a local video, its id and the sha256 intake recorded, copy it to the cluster
        (resuming an interrupted copy) and check it there; return the remote path.

        A copy already there and matching is not sent again. A copy that does not match after
        sending is removed, and TransferError raised. progress(bytes sent so far) follows the copy."""
        source = Path(source)
        if not source.is_file():
            raise TransferError(f"cannot stage {source} on {self.ssh.host}: the file is gone")
        remote = self.remote_video_path(video_id, str(source))
        expected = sha256.strip().lower()
        self._make_layout()
        if self._remote_sha256(remote) == expected:
            return remote
        # --ignore-times: a damaged copy of the same size and time must still be corrected.
        self._rsync(["--times", "--ignore-times", f"--partial-dir={PARTIAL_DIR}", str(source),
                     self._far(remote)], f"copying {source} to {self._far(remote)}", progress=progress)
        found = self._remote_sha256(remote)
        if found != expected:
            self.ssh.run(f"rm -f -- {shlex.quote(remote)}")
            raise TransferError(
                f"the copy of {source} at {self._far(remote)} has sha256 {str(found)[:12]}… but the video was "
                f"recorded as {expected[:12]}…: the file changed since it was found, or was damaged on the way; "
                "the copy was removed")
        return remote

    def remove_videos(self, remote_paths: list[str]) -> None:
        """Given staged video paths (from stage_video), remove them and any partial copy; absent
        ones are fine. Raise ValueError for a path that is not directly in root/videos/."""
        for path in remote_paths:
            self._check_video_path(path)
        if not remote_paths:
            return
        partials = [f"{self.videos}/{PARTIAL_DIR}/{posixpath.basename(path)}" for path in remote_paths]
        self.ssh.run("rm -f -- " + " ".join(shlex.quote(path) for path in [*remote_paths, *partials]))

    # ------------------------------------------------------------------ model

    def sync_model(self, project_config: Path) -> str:
        """Given the lab's DeepLabCut config.yaml, mirror its project folder (without videos,
        labeled data and evaluation results) to root/model/<project folder name>/; return the
        remote config.yaml path."""
        project_config = Path(project_config)
        if not project_config.is_file():
            raise TransferError(f"cannot copy the model to {self.ssh.host}: {project_config} is not a file")
        project = project_config.resolve().parent
        remote = f"{self.model}/{project.name}"
        self._make_layout()
        # Links that leave the project (a model folder on another share) are copied as files:
        # their targets do not exist on the cluster.
        self._rsync(["--recursive", "--links", "--copy-unsafe-links", "--times", "--delete",
                     *(f"--exclude={pattern}" for pattern in MODEL_EXCLUDES),
                     f"{project}/", self._far(remote) + "/"], f"copying the model {project} to {self._far(remote)}")
        return f"{remote}/{project_config.name}"

    def sync_file(self, local: Path, name: str) -> str:
        """Given a local file and the name it gets in root/model/, copy it there (with its JSON
        sidecar, the same path with suffix .json, when one exists); return the remote path."""
        _check_name(name)
        local = Path(local)
        if not local.is_file():
            raise TransferError(f"cannot copy {local} to {self.ssh.host}: it is not a file")
        self._make_layout()
        remote = f"{self.model}/{name}"
        copies = [(local, remote)]
        sidecar = local.with_suffix(".json")
        if sidecar != local and sidecar.is_file():
            copies.append((sidecar, f"{self.model}/{Path(name).with_suffix('.json').name}"))
        for file, target in copies:
            self._rsync(["--times", "--checksum", str(file), self._far(target)],
                        f"copying {file} to {self._far(target)}")
        return remote

    # ------------------------------------------------------------------ jobs

    def push_jobs(self, names: list[str]) -> None:
        """Given sub-folder names of the local jobs folder, copy them into root/jobs/ (one rsync)."""
        for name in names:
            _check_name(name)
        if not names:
            return
        missing = [name for name in names if not (self.local_jobs_dir / name).is_dir()]
        if missing:
            raise TransferError(f"cannot send jobs to {self.ssh.host}: no folder {', '.join(missing)} "
                                f"in {self.local_jobs_dir}")
        self._rsync(["--recursive", "--links", "--times", *(str(self.local_jobs_dir / name) for name in names),
                     self._far(self.jobs) + "/"], f"sending {len(names)} job folder(s) to {self._far(self.jobs)}",
                    make=self.jobs)

    def pull_jobs(self, names: list[str]) -> None:
        """Given job folder names, bring root/jobs/<name>/ back into the local jobs folder in one
        rsync, without project views or staged inputs, never deleting a local file. Names the
        cluster does not have are skipped."""
        for name in names:
            _check_name(name)
        if not names:
            return
        self.local_jobs_dir.mkdir(parents=True, exist_ok=True)
        # Filter rules match from the top of jobs/, first match wins: leave out what is never
        # wanted, take the named folders, and nothing else at the top.
        rules = [*(f"--exclude={pattern}" for pattern in PULL_EXCLUDES),
                 *(f"--include=/{name}/" for name in names), "--exclude=/*"]
        self._rsync(["--recursive", "--links", "--times", *rules, self._far(self.jobs) + "/",
                     f"{self.local_jobs_dir}/"], f"fetching {len(names)} job folder(s) from {self._far(self.jobs)}",
                    make=self.jobs)

    def remove_jobs(self, names: list[str]) -> None:
        """Given job folder names, remove root/jobs/<name> for each (absent ones are fine)."""
        for name in names:
            _check_name(name)
        if names:
            self.ssh.run("rm -rf -- " + " ".join(shlex.quote(f"{self.jobs}/{name}") for name in names))

    # ------------------------------------------------------------------ helpers

    def _far(self, path: str) -> str:
        return f"{self.ssh.host}:{path}"

    def _make_layout(self) -> None:
        self.ssh.run("mkdir -p -- " + " ".join(shlex.quote(path) for path in (self.videos, self.jobs, self.model)))

    def _rsync(self, args: list[str], what: str, make: str = "", progress: Callable[[int], None] | None = None) -> None:
        """Run rsync over this host's ssh with args. With `make`, that remote folder is created
        first in the same connection (rsync runs `mkdir -p … && rsync` there)."""
        argv = ["rsync", "--protect-args", "-e", self.ssh.rsync_e()]
        if make:
            argv.append(f"--rsync-path=mkdir -p -- {shlex.quote(make)} && rsync")
        check_output([*argv, *args], what, progress=progress)

    def _remote_sha256(self, remote: str) -> str | None:
        """Return the sha256 of a remote file, or None when there is none."""
        quoted = shlex.quote(remote)
        out = self.ssh.run(f"if [ -f {quoted} ]; then sha256sum < {quoted}; fi")
        return out.split()[0].lower() if out.split() else None

    def _check_video_path(self, path: str) -> None:
        name = posixpath.basename(path)
        if (posixpath.dirname(path) != self.videos or posixpath.normpath(path) != path
                or name in ("", ".", "..", PARTIAL_DIR)):
            raise ValueError(f"{path!r} is not a staged video in {self.videos}/: refusing to remove it")


def _check_name(name: str) -> None:
    """Raise ValueError unless name is one plain folder or file name (no '/', not '.' or '..',
    nothing rsync's filter rules would read as a pattern)."""
    if (not isinstance(name, str) or name in ("", ".", "..") or "/" in name
            or FILTER_CHARACTERS.intersection(name)):
        raise ValueError(f"{name!r} is not a plain name for a folder or file in the cluster scratch folder")
