"""The real command line: help everywhere, config commands, status/show/retry on a real database."""

import argparse
import json

import pytest

from conftest import cli
from dlcwatch.cli import build_parser, main
from dlcwatch.config import example_yaml
from dlcwatch.states import VideoState
from dlcwatch.store import Store


def _all_parsers(parser, prefix=()):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_parsers(sub, prefix + (name,))


def test_every_command_and_option_has_help():
    for path, parser in _all_parsers(build_parser()):
        assert parser.description or not path, f"`dlcwatch {' '.join(path)}` has no description"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, f"`dlcwatch {' '.join(path)} {choice.dest}` has no help"
            elif action.dest not in ("help", "version"):
                assert action.help, f"option {action.dest} of `dlcwatch {' '.join(path)}` has no help"


def test_help_runs_for_every_command(capsys):
    for path, _ in _all_parsers(build_parser()):
        with pytest.raises(SystemExit) as exit_:
            main([*path, "--help"])
        assert exit_.value.code == 0
        assert "usage: dlcwatch" in capsys.readouterr().out


def test_python_dash_m_and_config_example():
    completed = cli("config", "example")
    assert completed.returncode == 0
    assert completed.stdout == example_yaml()


def test_config_validate_lists_every_problem(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("watch: {roots: [{path: /no/such/folder}], settle: 3}\nmodel: {config: /no/config.yaml}\n")
    completed = cli("config", "validate", "--config", str(path))
    assert completed.returncode == 2
    for text in ["watch.settle: unknown key; did you mean 'settle_s'?", "/no/such/folder does not exist",
                 "output.root: required"]:
        assert text in completed.stderr


def test_config_validate_accepts_a_good_file(lab, tmp_path):
    completed = cli("config", "validate", env={"DLCWATCH_CONFIG": str(tmp_path / "config.yaml")})
    assert completed.returncode == 0, completed.stderr
    assert "valid" in completed.stdout


def test_status_show_and_retry_on_a_real_database(lab, tmp_path, capsys):
    store = Store(lab.state.database)
    ok = store.add_video(f"{tmp_path}/videos/good.mp4", f"{tmp_path}/videos", "good.mp4", size=1, mtime_ns=1)
    bad = store.add_video(f"{tmp_path}/videos/bad é.mp4", f"{tmp_path}/videos", "bad é.mp4", size=1, mtime_ns=1)
    store.set_video_state(ok.id, VideoState.QUEUED, "complete")
    store.set_video_state(bad.id, VideoState.QUARANTINED, "quarantined: not a readable video")
    store.close()
    config = str(tmp_path / "config.yaml")

    assert main(["status", "--config", config]) == 0
    text = capsys.readouterr().out
    assert "2 video(s): 1 queued, 1 quarantined" in text
    assert "1 need a person" in text and "quarantined: not a readable video" in text

    assert main(["status", "--json", "--config", config]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["quarantined"] == 1 and data["total"] == 2

    assert main(["show", "bad é", "--config", config]) == 0
    text = capsys.readouterr().out
    assert "settling → quarantined" in text and "not a readable video" in text

    assert main(["show", ".mp4", "--config", config]) == 1
    assert "2 videos match" in capsys.readouterr().err

    assert main(["retry", "good", "--config", config]) == 1
    assert "only" in capsys.readouterr().err
    assert main(["retry", str(bad.id), "--config", config]) == 0
    store = Store(lab.state.database)
    assert store.video(bad.id).state is VideoState.SETTLING
    assert store.events(video_id=bad.id)[-1].message == "retry requested by a person"


def test_status_before_the_daemon_ever_ran(lab, tmp_path):
    completed = cli("status", "--config", str(tmp_path / "config.yaml"))
    assert completed.returncode == 1
    assert "has the daemon run yet" in completed.stderr


def test_status_reports_throughput_and_an_eta(lab):
    from dlcwatch.status import status_data

    store = Store(lab.state.database)
    now = 100_000.0
    for index in range(6):
        video = store.add_video(f"/v/{index}.mp4", "/v", f"{index}.mp4", size=1, mtime_ns=1, now=now - 7200)
        store.set_video_state(video.id, VideoState.QUEUED, "ok", now=now - 7000)
        if index < 3:  # three delivered in the last hour, three still queued
            for state in ("submitted", "running", "analyzed", "delivering", "done"):
                store.set_video_state(video.id, VideoState(state), state, now=now - 600 * (index + 1))
    data = status_data(store, now=now)
    assert data["throughput"] == {"done_last_hour": 3, "done_last_day": 3}
    assert data["pending"] == 3 and data["eta_s"] == 3600


def test_config_is_accepted_before_the_command_too(tmp_path):
    store = Store(tmp_path / "state.db")
    store.add_video("/v/a.mp4", "/v", "a.mp4", size=1, mtime_ns=1, now=1.0)
    store.close()
    config = tmp_path / "c.yaml"
    config.write_text(f"watch: {{roots: [{{path: {tmp_path}}}]}}\nstate: {{database: {tmp_path / 'state.db'}}}\n"
                      f"output: {{root: {tmp_path / 'out'}}}\nmodel: {{config: {config}}}\n")
    before = cli("--config", str(config), "status", "--json")
    after = cli("status", "--json", "--config", str(config))
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["total"] == 1
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["counts"] == json.loads(before.stdout)["counts"]


def test_demo_without_ffmpeg_says_so_in_one_line(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    completed = cli("demo", str(tmp_path / "demo"), env={"PATH": str(empty)})
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    [line] = completed.stderr.strip().splitlines()
    assert "ffmpeg" in line and "apt-get install ffmpeg" in line
