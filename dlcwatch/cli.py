"""The command line: each command parses its arguments and calls into the package.

Exit codes: 0 success, 1 a failure while working, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import dlcwatch
from dlcwatch.config import CONFIG_ENV, ConfigError, example_yaml, find_config_path, load_config
from dlcwatch.states import VIDEO_RETRYABLE, VideoState
from dlcwatch.store import Store, StoreError, Video
from dlcwatch.status import format_show, render_status, show_data, status_data

EXIT_FAILURE = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlcwatch",
        description="Watch folders for behavior videos, analyze them with DeepLabCut, deliver the results.")
    parser.add_argument("--version", action="version", version=f"dlcwatch {dlcwatch.__version__}")
    # Accepted before the command too (`dlcwatch --config FILE status`), as people type it.
    parser.add_argument("--config", dest="global_config", metavar="PATH",
                        help=f"configuration file, before or after the command (default: ${CONFIG_ENV})")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    with_config = argparse.ArgumentParser(add_help=False)
    with_config.add_argument("--config", metavar="PATH",
                             help=f"configuration file (default: ${CONFIG_ENV})")

    run = commands.add_parser("run", parents=[with_config], help="run the daemon in the foreground",
                              description="Run the daemon: watch, queue, analyze, deliver. Stops cleanly "
                                          "on SIGTERM or Ctrl-C; running jobs carry on.")
    run.add_argument("--until-idle", action="store_true",
                     help="exit once nothing is pending or in flight (batch use and tests)")
    run.set_defaults(func=command_run)

    status = commands.add_parser("status", parents=[with_config], help="show counts per state and recent videos",
                                 description="Show how many videos are in each state and the most recent ones.")
    status.add_argument("--json", action="store_true", help="print machine-readable JSON")
    status.add_argument("--limit", type=int, default=15, metavar="N", help="recent videos to list (default 15)")
    status.add_argument("--watch", action="store_true", help="refresh every few seconds until Ctrl-C")
    status.set_defaults(func=command_status)

    show = commands.add_parser("show", parents=[with_config], help="show one video's history",
                               description="Show a video's details and every event that happened to it.")
    show.add_argument("video", help="video id, path, or part of its file name")
    show.add_argument("--json", action="store_true", help="print machine-readable JSON")
    show.set_defaults(func=command_show)

    retry = commands.add_parser("retry", parents=[with_config], help="analyze failed or quarantined videos again",
                                description="Send videos back to the start: they are probed, fingerprinted "
                                            "and analyzed again, with a fresh count of attempts.")
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("video", nargs="?", help="video id, path, or part of its file name")
    target.add_argument("--failed", action="store_true", help="retry every failed video")
    retry.set_defaults(func=command_retry)

    cancel = commands.add_parser("cancel", parents=[with_config], help="cancel a video's job, or a job",
                                 description="Stop a running or pending job (scancel on SLURM). Its videos "
                                             "are marked failed and stay so until `dlcwatch retry`; other "
                                             "videos in the same job are cancelled with it.")
    which = cancel.add_mutually_exclusive_group(required=True)
    which.add_argument("video", nargs="?", help="video id, path, or part of its file name")
    which.add_argument("--job", type=int, metavar="ID", help="a dlcwatch job id (see `dlcwatch status`)")
    cancel.set_defaults(func=command_cancel)

    config = commands.add_parser("config", help="validate the configuration or print an example",
                                 description="Check a configuration file, or print the commented example.")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    validate = config_commands.add_parser("validate", parents=[with_config], help="check a configuration file",
                                          description="Report every problem in the configuration at once.")
    validate.set_defaults(func=command_config_validate)
    example = config_commands.add_parser("example", help="print the example configuration",
                                         description="Print the commented example configuration, generated "
                                                     "from the schema.")
    example.set_defaults(func=command_config_example)

    demo = commands.add_parser("demo", help="build a working example and run it end to end",
                               description="Make synthetic videos and a tiny DeepLabCut model (trained on the "
                                           "CPU in seconds, nothing downloaded) in DIR, then run the daemon "
                                           "until every video is delivered.")
    demo.add_argument("dir", help="folder for the example (created if missing)")
    demo.add_argument("--setup-only", action="store_true", help="build the example but do not run it")
    demo.add_argument("--videos", type=int, default=3, metavar="N", help="synthetic videos to make (default 3)")
    demo.set_defaults(func=command_demo)

    web = commands.add_parser("web", parents=[with_config], help="serve the read-only web page",
                              description="Serve a read-only web page of the pipeline (overview, videos, "
                                          "jobs, QC pictures) for people without a shell on this machine. "
                                          "Needs the web extra: pip install 'dlcwatch[web]'.")
    web.add_argument("--listen", metavar="HOST:PORT",
                     help="address to serve on (default: web.listen, 127.0.0.1:8080); any other than "
                          "loopback needs web.token or DLCWATCH_WEB_TOKEN")
    web.set_defaults(func=command_web)

    from dlcwatch.behavior.cli import register as register_behavior

    register_behavior(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None) is None:
        args.config = args.global_config
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except ConfigError as error:
        print(f"dlcwatch: {error}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as error:
        print(f"dlcwatch: {error}", file=sys.stderr)
        return EXIT_FAILURE


def _config(args):
    return load_config(find_config_path(args.config))


def _setup_logging(level: str = "info") -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def command_run(args) -> int:
    from dlcwatch.daemon import Daemon

    config = _config(args)
    _setup_logging(config.daemon.log_level)
    daemon = Daemon(config, config_path=find_config_path(args.config))
    try:
        return daemon.run(until_idle=args.until_idle)
    finally:
        daemon.close()


def _read_store(args) -> Store:
    config = load_config(find_config_path(args.config), check_paths=False)
    return Store(config.state.database, read_only=True)


def command_status(args) -> int:
    from rich.console import Console
    from rich.live import Live

    store = _read_store(args)
    if args.json:
        print(json.dumps(status_data(store, limit=args.limit), indent=2, ensure_ascii=False))
        return 0
    console = Console(highlight=False)
    if not args.watch:
        console.print(render_status(status_data(store, limit=args.limit)))
        return 0
    try:
        with Live(render_status(status_data(store, limit=args.limit)), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(2)
                live.update(render_status(status_data(store, limit=args.limit)), refresh=True)
    except KeyboardInterrupt:
        return 0


def _find_one(store: Store, needle: str) -> Video | None:
    matches = store.find_videos(needle)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        print(f"dlcwatch: no video matches {needle!r}", file=sys.stderr)
    else:
        print(f"dlcwatch: {len(matches)} videos match {needle!r}; be more specific:", file=sys.stderr)
        for video in matches[:20]:
            print(f"  {video.id:>6}  {video.state.value:<11}  {video.path}", file=sys.stderr)
    return None


def command_show(args) -> int:
    store = _read_store(args)
    video = _find_one(store, args.video)
    if video is None:
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(show_data(store, video), indent=2, ensure_ascii=False))
        return 0
    print(format_show(store, video))
    return 0


def command_retry(args) -> int:
    config = load_config(find_config_path(args.config), check_paths=False)
    store = Store(config.state.database)
    if args.failed:
        videos = store.videos([VideoState.FAILED])
    else:
        video = _find_one(store, args.video)
        if video is None:
            return EXIT_FAILURE
        if video.state not in VIDEO_RETRYABLE:
            print(f"dlcwatch: video {video.id} is {video.state.value}; only "
                  f"{', '.join(sorted(s.value for s in VIDEO_RETRYABLE))} videos can be retried", file=sys.stderr)
            return EXIT_FAILURE
        videos = [video]
    for video in videos:
        # stable_since 0: admitted on the next tick if the file still matches what was recorded.
        store.set_video_state(video.id, VideoState.SETTLING, "retry requested by a person", attempts=0,
                              not_before=None, stable_since=0.0, duplicate_of=None)
        print(f"video {video.id} will be analyzed again: {video.path}")
    if not videos:
        print("no failed videos")
    return 0


def command_cancel(args) -> int:
    from dlcwatch.executors import ExecutorError, make_executor
    from dlcwatch.states import JOB_ACTIVE

    config = load_config(find_config_path(args.config), check_paths=False)
    store = Store(config.state.database)
    if args.job is not None:
        job_id = args.job
    else:
        video = _find_one(store, args.video)
        if video is None:
            return EXIT_FAILURE
        job_id = video.job_id
    try:
        job = store.job(job_id) if job_id is not None else None
    except KeyError:
        job = None
    if job is None or job.state not in JOB_ACTIVE:
        print(f"dlcwatch: no pending or running job to cancel ({'job ' + str(job_id) if job_id else 'no job'})",
              file=sys.stderr)
        return EXIT_FAILURE
    # Marked first: the daemon may see the job end before this command returns.
    store.update_job(job.id, cancel_requested=time.time())
    try:
        make_executor(config).cancel(job)
    except ExecutorError as error:
        store.update_job(job.id, cancel_requested=None)
        print(f"dlcwatch: {error}", file=sys.stderr)
        return EXIT_FAILURE
    store.add_event("cancel requested by a person", job_id=job.id)
    print(f"job {job.id} ({job.executor} {job.executor_job_id}) cancelled; the daemon marks its videos failed")
    return 0


def command_config_validate(args) -> int:
    path = find_config_path(args.config)
    load_config(path)
    print(f"{path}: valid")
    return 0


def command_config_example(args) -> int:
    sys.stdout.write(example_yaml())
    return 0


def command_web(args) -> int:
    from dlcwatch.web.access import check_access, parse_listen, web_token

    config = load_config(find_config_path(args.config), check_paths=False)
    host, port = parse_listen(args.listen or config.web.listen)
    check_access(host, web_token(config))
    try:
        from dlcwatch.web.server import serve
    except ImportError as error:
        print(f"dlcwatch: `dlcwatch web` needs the web extra ({error.name} is missing): "
              "pip install 'dlcwatch[web]'", file=sys.stderr)
        return EXIT_USAGE
    _setup_logging(config.daemon.log_level)
    return serve(config, host, port)


def command_demo(args) -> int:
    from dlcwatch.demo.run import run_demo

    _setup_logging()
    return run_demo(Path(args.dir), videos=args.videos, setup_only=args.setup_only)


if __name__ == "__main__":
    sys.exit(main())
