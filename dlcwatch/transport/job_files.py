"""How the files of a job reach the machines that run it, and how its results come back.

Two cases, one interface, so the daemon and the SLURM executor do not branch on them:

- SharedFiles: jobs see this machine's paths (local executor, or a cluster that mounts the same
  file systems). Nothing is copied.
- StagedFiles: the cluster sees none of our paths (`executor.slurm.scratch`, `executor.sge.scratch`). Videos are copied
  into its scratch before their job is submitted and deleted there once analyzed; the model is
  mirrored there; each job's folder (spec, sbatch script) is pushed before sbatch and pulled
  back, one rsync for all active jobs, before the daemon reads results.

Paths of the local jobs folder map one to one onto the cluster's jobs folder.
"""

from __future__ import annotations

from pathlib import Path

from dlcwatch.executors.cluster_schema import CLUSTER_KINDS
from dlcwatch.transport.scratch import ClusterScratch
from dlcwatch.transport.ssh import SshHost


class SharedFiles:
    """Jobs read and write this machine's paths: every method is the identity or does nothing."""

    staged = False

    def job_path(self, local: Path) -> str:
        return str(local)

    def model_config(self, config: str) -> str:
        return config

    def behavior_model(self, model: str) -> str:
        return model

    def stage(self, video, progress=None) -> str:
        return video.path

    def push(self, folders: list[Path]) -> None:
        pass

    def pull(self, folders: list[Path]) -> None:
        pass

    def remove_jobs(self, folders: list[Path]) -> None:
        pass

    def release(self, staged_paths: list[str]) -> None:
        pass

    def forget_model(self) -> None:
        pass


class StagedFiles:
    """Given a ClusterScratch, copy what jobs need there and bring their results back.

    Every method raises TransferError (an OSError) when the cluster cannot be reached or a copy
    does not verify; the daemon keeps the state and tries again later."""

    staged = True

    def __init__(self, scratch: ClusterScratch):
        self.scratch = scratch
        self.local_jobs = scratch.local_jobs_dir.absolute()
        self._synced: dict[str, str] = {}   # local model path -> its path on the cluster, once per run

    def job_path(self, local: Path) -> str:
        """Given a path under the local jobs folder, return the same place on the cluster."""
        relative = Path(local).absolute().relative_to(self.local_jobs)
        return f"{self.scratch.jobs}/{relative.as_posix()}"

    def model_config(self, config: str) -> str:
        """Mirror the DeepLabCut project (first use in this run only); return its config on the cluster."""
        if config not in self._synced:
            self._synced[config] = self.scratch.sync_model(Path(config))
        return self._synced[config]

    def behavior_model(self, model: str) -> str:
        if not model:
            return model
        if model not in self._synced:
            self._synced[model] = self.scratch.sync_file(Path(model), Path(model).name)
        return self._synced[model]

    def stage(self, video, progress=None) -> str:
        """Copy a video into the cluster's scratch, verified against the sha256 intake recorded;
        progress(bytes sent so far) follows the copy."""
        return self.scratch.stage_video(Path(video.path), video.id, video.sha256, progress)

    def push(self, folders: list[Path]) -> None:
        self.scratch.push_jobs(self._names(folders))

    def pull(self, folders: list[Path]) -> None:
        if folders:
            self.scratch.pull_jobs(self._names(folders))

    def remove_jobs(self, folders: list[Path]) -> None:
        if folders:
            self.scratch.remove_jobs(self._names(folders))

    def release(self, staged_paths: list[str]) -> None:
        if staged_paths:
            self.scratch.remove_videos(staged_paths)

    def forget_model(self) -> None:
        """Mirror the model again at its next use: after a reload it may have been retrained."""
        self._synced.clear()

    def _names(self, folders: list[Path]) -> list[str]:
        names = []
        for folder in folders:
            relative = Path(folder).absolute().relative_to(self.local_jobs)
            if len(relative.parts) != 1:
                raise ValueError(f"{folder} is not a job folder directly under {self.local_jobs}")
            if relative.name not in names:
                names.append(relative.name)
        return names


def cluster_settings(config):
    """Given the config, return the section of its cluster executor (executor.slurm, .sge, .pbs), or
    None for the local executor."""
    kind = config.executor.kind
    return config.executor[kind] if kind in CLUSTER_KINDS else None


def cluster_ssh_host(config) -> SshHost | None:
    """Given the config, return the cluster's login node when the cluster executor's host is set."""
    settings = cluster_settings(config)
    if settings is None or not settings.host:
        return None
    return SshHost.configured(settings.host, settings.ssh, Path(config.staging.dir) / "ssh")


slurm_ssh_host = cluster_ssh_host  # its name from before Grid Engine


def cluster_files(config) -> SharedFiles | StagedFiles:
    """Given the config, return how job files reach the cluster."""
    host = cluster_ssh_host(config)
    if host is None or not cluster_settings(config).scratch:
        return SharedFiles()
    return StagedFiles(ClusterScratch(host, cluster_settings(config).scratch, Path(config.staging.dir) / "jobs"))
