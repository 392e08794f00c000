import pytest

from dlcwatch.intake.scan import filesystem_type, is_partial_name, list_candidates, matches_patterns, should_poll

MOUNTINFO = """\
22 1 253:0 / / rw,relatime - ext4 /dev/vda rw
40 22 0:35 / /mnt/lab rw,relatime - nfs4 server:/export rw
41 40 0:36 / /mnt/lab/local\\040disk rw - ext4 /dev/sdb rw
42 22 0:37 / /mnt/smb rw - cifs //nas/share rw
"""


@pytest.mark.parametrize("name", ["v.mp4.part", ".v.mp4.Gx7a2", "v.mp4~", "v.mp4.tmp", "._v.mp4", "~$v.mp4",
                                  "v.mp4.crdownload", "v.MP4.PART"])
def test_names_of_files_still_being_written_are_ignored(name):
    assert is_partial_name(name)


def test_patterns_ignore_case_and_honour_excludes():
    assert matches_patterns("a/Mouse1.MP4", ["*.mp4"], [])
    assert not matches_patterns("a/notes.txt", ["*.mp4"], [])
    assert not matches_patterns("calibration/c.mp4", ["*.mp4"], ["calibration/*"])
    assert not matches_patterns("x/checkerboard.avi", ["*.avi"], ["checker*"])


def test_listing_skips_hidden_folders_partials_and_our_own_folders(tmp_path):
    for name in ["a.mp4", "sub/b.AVI", ".snapshot/c.mp4", "d.mp4.part", "results/e.mp4", "notes.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found, problems = list_candidates(str(tmp_path), ["*.mp4", "*.avi"], [], True,
                                      skip_dirs=(str(tmp_path / "results"),))
    assert sorted(f.relpath for f in found) == ["a.mp4", "sub/b.AVI"]
    assert problems == []
    flat, _ = list_candidates(str(tmp_path), ["*.mp4", "*.avi"], [], False)
    assert [f.relpath for f in flat] == ["a.mp4"]


def test_network_file_systems_are_polled_in_auto_mode():
    assert filesystem_type("/mnt/lab/x/y.mp4", MOUNTINFO) == "nfs4"
    assert filesystem_type("/mnt/lab/local disk/y.mp4", MOUNTINFO) == "ext4"
    assert should_poll("auto", "/mnt/smb/videos", MOUNTINFO)
    assert should_poll("auto", "/mnt/lab", MOUNTINFO)
    assert not should_poll("auto", "/home/lab", MOUNTINFO)
    assert should_poll("on", "/home/lab", MOUNTINFO)
    assert not should_poll("off", "/mnt/smb", MOUNTINFO)
