"""The CPU fallback against a real SLURM with two fake GPUs: once a GPU job has waited past the
configured time, the next job goes to the CPU partition and starts there."""

import time

from dlcwatch.jobs.spec import read_json
from dlcwatch.states import JobState
from cluster_fixtures import poll_until, queue_videos
from test_slurm_arrays import array_daemon, cancel_all

pytest_plugins = ["slurm_fixtures"]




def test_jobs_go_to_the_cpu_partition_while_gpu_jobs_wait_and_back_once_they_run(slurm_cluster, tmp_path):
    daemon = array_daemon(slurm_cluster, tmp_path, gpus=1, array_tasks=1, max_jobs_in_flight=10,
                          cpu_fallback={"partition": "cpu", "after_pending_min": 0.05, "cpus": 1,
                                        "time_limit_min": 5})
    try:
        queue_videos(daemon, 3)
        daemon.submit(time.time())
        gpu_jobs = daemon.store.active_jobs()
        assert len(gpu_jobs) == 3 and all(job.resources == {} for job in gpu_jobs)
        # Two GPUs: two jobs run, the third waits for one.
        poll_until(daemon, lambda: len(daemon.store.jobs([JobState.RUNNING])) == 2, 60, "two GPU jobs running")
        [waiting] = daemon.store.jobs([JobState.SUBMITTED])
        time.sleep(max(0.0, waiting.created + 3.5 - time.time()))
        daemon.poll(time.time() + 2)  # past poll_interval_s: asks again, sees it still pending

        queue_videos(daemon, 1)
        daemon.submit(time.time())
        cpu_job = max(daemon.store.active_jobs(), key=lambda job: job.id)
        assert cpu_job.resources["partition"] == "cpu" and cpu_job.resources["gpus"] == 0
        script = (tmp_path / "staging" / "jobs" / f"job{cpu_job.id}" / "job.sbatch").read_text()
        assert "#SBATCH --partition=cpu\n" in script and "--gres" not in script
        assert "#SBATCH --time=00:05:00\n" in script and "#SBATCH --cpus-per-task=1\n" in script
        assert read_json(cpu_job.spec_path)["model"]["device"] == "cpu"
        events = [event.message for event in daemon.store.events(job_id=cpu_job.id)]
        assert any("sent to partition cpu without GPUs" in message for message in events)
        # The test cluster's one node is in both partitions, so SLURM backfills the CPU job only if
        # it ends before the waiting GPU job could start (5 min < 10): on a real cluster the CPU
        # partition has nodes of its own.
        poll_until(daemon, lambda: daemon.store.job(cpu_job.id).state is JobState.RUNNING, 60,
                   "the CPU job running while the GPU job still waits")
        assert daemon.store.job(waiting.id).state is JobState.SUBMITTED

        # The GPUs free up and the waiting job runs: the next job asks for a GPU again.
        for job in gpu_jobs[:2]:
            slurm_cluster.command("scancel", job.executor_job_id)
        poll_until(daemon, lambda: daemon.store.job(waiting.id).state is JobState.RUNNING, 60,
                   "the waiting GPU job to start")
        queue_videos(daemon, 1)
        daemon.submit(time.time())
        newest = max(daemon.store.active_jobs(), key=lambda job: job.id)
        assert newest.id > cpu_job.id and newest.resources == {}
    finally:
        cancel_all(slurm_cluster, daemon)
        daemon.close()
