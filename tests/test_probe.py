import pytest

from dlcwatch.intake.probe import ProbeError, probe_video
from dlcwatch.demo.synthetic import write_video


def test_a_good_video_reports_frames_rate_and_codec(tmp_path):
    info = probe_video(write_video(tmp_path / "a.mp4", frames=45, size=64))
    assert (info.frames, info.fps, info.codec, info.width, info.height) == (45, 30.0, "h264", 64, 64)
    assert info.duration == pytest.approx(1.5, abs=0.05)


def test_fractional_frame_rate_is_kept(tmp_path):
    info = probe_video(write_video(tmp_path / "b.avi", frames=30, size=64, fps=29.97))
    assert info.fps == pytest.approx(29.97, abs=1e-3)
    assert info.frames == 30


def test_a_name_starting_with_a_dash_is_not_an_option(tmp_path, monkeypatch):
    write_video(tmp_path / "-v.mp4", frames=10, size=64)
    monkeypatch.chdir(tmp_path)
    assert probe_video("-v.mp4").frames == 10


@pytest.mark.parametrize("content", [b"", b"this is a text file, not a video\n"])
def test_files_that_are_not_videos_are_refused(tmp_path, content):
    path = tmp_path / "fake.mp4"
    path.write_bytes(content)
    with pytest.raises(ProbeError, match="not a readable video"):
        probe_video(path)


def test_a_truncated_mp4_is_refused(tmp_path):
    good = write_video(tmp_path / "good.mp4", frames=60, size=64)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(ProbeError):
        probe_video(broken)
