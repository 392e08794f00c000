from dlcwatch.states import (
    JOB_TRANSITIONS,
    VIDEO_NEEDS_A_PERSON,
    VIDEO_PENDING,
    VIDEO_TERMINAL,
    VIDEO_TRANSITIONS,
    JobState,
    TransitionError,
    VideoState,
    check_video_transition,
)
import pytest


def test_every_state_has_its_transitions_listed():
    assert set(VIDEO_TRANSITIONS) == set(VideoState)
    assert set(JOB_TRANSITIONS) == set(JobState)


def test_the_happy_path_is_allowed():
    path = ["settling", "queued", "submitted", "running", "analyzed", "delivering", "done"]
    for old, new in zip(path, path[1:]):
        check_video_transition(VideoState(old), VideoState(new))


@pytest.mark.parametrize("old,new", [("settling", "done"), ("quarantined", "queued"), ("done", "queued"),
                                     ("queued", "analyzed"), ("missing", "running")])
def test_shortcuts_are_refused(old, new):
    with pytest.raises(TransitionError, match=f"from {old} to {new}"):
        check_video_transition(VideoState(old), VideoState(new))


def test_terminal_states_only_leave_through_a_retry():
    for state in VIDEO_TERMINAL:
        assert VIDEO_TRANSITIONS[state] == {VideoState.SETTLING}


def test_state_groups_cover_every_state_once():
    assert VIDEO_PENDING | VIDEO_TERMINAL == set(VideoState) and not VIDEO_PENDING & VIDEO_TERMINAL
    assert VIDEO_NEEDS_A_PERSON < VIDEO_TERMINAL and VideoState.MISSING in VIDEO_NEEDS_A_PERSON
    assert VideoState.DONE not in VIDEO_NEEDS_A_PERSON and VideoState.DUPLICATE not in VIDEO_NEEDS_A_PERSON
