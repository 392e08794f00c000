from dlcwatch.jobs.packing import pack_by_frames


def test_jobs_get_about_the_same_number_of_frames():
    frames = [3000, 100, 100, 100, 3000, 100, 100, 100]
    jobs = pack_by_frames(frames, 4, frames=lambda f: f)
    assert [sum(job) for job in jobs] == [3300, 3300]
    shuffled = [3000, 3000, 100, 100, 100, 100, 100, 100]
    assert [sum(job) for job in pack_by_frames(shuffled, 4, frames=lambda f: f)] == [3300, 3300]  # not 6100 + 500
    mixed = [9000, 100, 100, 100, 8000, 300, 200, 9500]
    jobs = pack_by_frames(mixed, 4, frames=lambda f: f)
    assert sorted(f for job in jobs for f in job) == sorted(mixed)  # nothing lost, nothing twice
    assert max(sum(job) for job in jobs) == 17200  # the best any split of 4 + 4 can do here


def test_never_more_than_per_job_and_as_few_jobs_as_possible():
    jobs = pack_by_frames(list(range(1, 11)), 3, frames=lambda f: f)
    assert len(jobs) == 4 and max(len(job) for job in jobs) == 3
    assert pack_by_frames([], 3, frames=lambda f: f) == []
    assert pack_by_frames([5], 3, frames=lambda f: f) == [[5]]
