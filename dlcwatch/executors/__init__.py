"""Executors run jobs: one interface (base.py), one module per kind of place jobs run."""

from __future__ import annotations

from dlcwatch.executors.base import Executor, ExecutorError, JobStatus, Outcome


def make_executor(config) -> Executor:
    """Given the validated config, return the executor it names."""
    kind = config.executor.kind
    if kind == "local":
        from dlcwatch.executors.local import LocalExecutor

        return LocalExecutor(config.executor.local)
    if kind == "slurm":
        from dlcwatch.transport.job_files import cluster_files, cluster_ssh_host
        from dlcwatch.executors.slurm.executor import SlurmExecutor
        from dlcwatch.transport.ssh import ssh_runner

        host = cluster_ssh_host(config)
        return SlurmExecutor(config.executor.slurm, runner=ssh_runner(host) if host else None,
                             files=cluster_files(config))
    if kind == "sge":
        from dlcwatch.transport.job_files import cluster_files, cluster_ssh_host
        from dlcwatch.executors.sge.executor import SgeExecutor
        from dlcwatch.transport.ssh import ssh_runner

        host = cluster_ssh_host(config)
        return SgeExecutor(config.executor.sge, runner=ssh_runner(host) if host else None,
                           files=cluster_files(config))
    raise ExecutorError(f"unknown executor kind {kind!r}")


__all__ = ["Executor", "ExecutorError", "JobStatus", "Outcome", "make_executor"]
