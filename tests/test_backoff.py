from dlcwatch.backoff import Backoff


def test_waits_double_from_the_first_and_stop_at_the_cap():
    backoff = Backoff(first_s=30.0, max_s=600.0)
    assert [backoff.delay(n) for n in range(0, 8)] == [0.0, 30.0, 60.0, 120.0, 240.0, 480.0, 600.0, 600.0]
    assert backoff.delay(10_000) == 600.0  # no overflow after a week of failures
