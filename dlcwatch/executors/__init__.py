"""Executors run jobs: one interface (base.py), one module per kind of place jobs run."""

from __future__ import annotations

import importlib

from dlcwatch.executors.base import Executor, ExecutorError, JobStatus, Outcome

# Each batch-scheduler executor (a ClusterExecutor) by its executor.kind, imported only when chosen.
CLUSTER_EXECUTORS = {
    "slurm": ("dlcwatch.executors.slurm.executor", "SlurmExecutor"),
    "sge": ("dlcwatch.executors.sge.executor", "SgeExecutor"),
    "pbs": ("dlcwatch.executors.pbs.executor", "PbsExecutor"),
}


def make_executor(config) -> Executor:
    """Given the validated config, return the executor it names."""
    kind = config.executor.kind
    if kind == "local":
        from dlcwatch.executors.local import LocalExecutor

        return LocalExecutor(config.executor.local)
    if kind in CLUSTER_EXECUTORS:
        from dlcwatch.transport.job_files import cluster_files, cluster_ssh_host
        from dlcwatch.transport.ssh import ssh_runner

        module, name = CLUSTER_EXECUTORS[kind]
        executor_class = getattr(importlib.import_module(module), name)
        host = cluster_ssh_host(config)
        return executor_class(config.executor[kind], runner=ssh_runner(host) if host else None,
                              files=cluster_files(config))
    raise ExecutorError(f"unknown executor kind {kind!r}")


__all__ = ["Executor", "ExecutorError", "JobStatus", "Outcome", "make_executor"]
