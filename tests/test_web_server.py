"""The web page over real HTTP: a real `dlcwatch web` process on 127.0.0.1 and real SQLite files.

The databases here are written through the real Store, the way the daemon writes them; the
pipeline-filled database and the browser are in test_web_browser.py."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import cli, write_config
from dlcwatch.states import JobState, VideoState as S
from dlcwatch.store import Store
from dlcwatch.demo.synthetic import write_video

pytest.importorskip("starlette", reason="the web extra is not installed: pip install 'dlcwatch[web]'")
pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install 'dlcwatch[web]'")

HOSTILE = "<img src=x onerror=alert(1)>.mp4"
TOKEN = "a-token-long-enough-0123456789"
# A real 1x1 PNG, so a served picture can be compared byte for byte.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def web_server(config_path: Path, *, env: dict | None = None):
    """Run `dlcwatch web` on a free port of 127.0.0.1; yield its base URL; stop it after."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "dlcwatch", "web", "--config", str(config_path),
                                "--listen", f"127.0.0.1:{port}"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"dlcwatch web exited {process.returncode}: {process.stdout.read()}")
            try:
                urllib.request.urlopen(base + "/static/style.css", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("dlcwatch web did not answer within 30 s") from None
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """GET a URL; return (status, headers, body) whatever the status."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def raw_get(base: str, path: str) -> tuple[int, bytes]:
    """GET a path exactly as written: no client-side clean-up of '..' or percent escapes."""
    host, port = urllib.parse.urlsplit(base).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=20)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def make_lab(folder: Path, **sections) -> tuple[Path, Store]:
    """A lab config (its model path exists, no DeepLabCut needed) and its open state database."""
    model = folder / "model" / "config.yaml"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_text("Task: none\n")
    config_path = write_config(folder, model, **sections)
    return config_path, Store(folder / "state" / "dlcwatch.db")


def add_video(store: Store, folder: Path, name: str, state: S = S.QUEUED, reason: str = "") -> int:
    """Record a video the way intake does and move it along real transitions to `state`."""
    path = folder / "videos" / name
    video = store.add_video(str(path), str(folder / "videos"), name, size=1000, mtime_ns=1)
    steps = {S.QUEUED: [S.QUEUED], S.QUARANTINED: [S.QUARANTINED], S.DUPLICATE: [S.DUPLICATE],
             S.FAILED: [S.QUEUED, S.FAILED], S.SETTLING: []}[state]
    for step in steps:
        store.set_video_state(video.id, step, reason or f"now {step.value}", frames=100, fps=30.0)
    return video.id


def deliver_done(store: Store, folder: Path, video_id: int, outputs: dict[str, str]) -> Path:
    """Move a queued video through a real job to done, with a results folder and manifest."""
    job = store.create_job("local", [video_id])
    log = folder / "staging" / f"job{job.id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("loading the model\nvideo analyzed\n")
    store.update_job(job.id, executor_job_id=f"pid {1000 + job.id}", log_path=str(log))
    store.set_job_state(job.id, JobState.SUBMITTED, "accepted")
    store.set_job_state(job.id, JobState.RUNNING, "running")
    results = folder / "results" / f"video{video_id}"
    results.mkdir(parents=True, exist_ok=True)
    store.set_video_state(video_id, S.RUNNING, "running")
    store.set_video_state(video_id, S.ANALYZED, "analyzed")
    store.set_video_state(video_id, S.DELIVERING, "delivering")
    manifest = {"outputs": {}}
    for kind, name in outputs.items():
        manifest["outputs"][kind] = {"file": name, "sha256": "", "bytes": 0}
    (results / "manifest.json").write_text(json.dumps(manifest))
    store.set_video_state(video_id, S.DONE, "delivered", output_dir=str(results))
    store.set_job_state(job.id, JobState.FINISHED, "finished")
    return results


def without_clock(data):
    """Given status or show JSON, drop what depends on the second it was taken."""
    if isinstance(data, dict):
        return {key: without_clock(value) for key, value in data.items()
                if key not in ("updated_ago_s", "elapsed_s", "for_s")}
    if isinstance(data, list):
        return [without_clock(value) for value in data]
    return data


def test_pages_escape_names_and_the_json_is_what_the_command_line_prints(tmp_path):
    config_path, store = make_lab(tmp_path)
    hostile = add_video(store, tmp_path, HOSTILE, S.QUARANTINED, reason="not a video: <script>alert(2)</script>")
    plain = add_video(store, tmp_path, "plain.mp4")
    deliver_done(store, tmp_path, plain, {"qc_png": "plain_qc.png"})
    add_video(store, tmp_path, "waiting.mp4")
    with web_server(config_path) as base:
        for path in ("/", "/videos", f"/videos/{hostile}", f"/videos?q={urllib.parse.quote('<img')}"):
            status, headers, body = get(base + path)
            html = body.decode()
            assert status == 200, path
            assert "&lt;img src=x onerror=alert(1)&gt;.mp4" in html, path
            assert "<img src=x" not in html and "<script>alert" not in html, path
            assert "script-src 'self'" in headers["content-security-policy"]
        status, _, body = get(f"{base}/videos/{hostile}")
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in body.decode()
        assert "dlcwatch retry" in body.decode()  # what a person can do about it

        _, _, body = get(base + "/api/status")
        printed = cli("status", "--json", "--config", str(config_path))
        assert printed.returncode == 0, printed.stderr
        assert without_clock(json.loads(body)) == without_clock(json.loads(printed.stdout))
        assert json.loads(body)["counts"]["quarantined"] == 1 and json.loads(body)["counts"]["done"] == 1

        _, _, body = get(f"{base}/api/videos/{plain}")
        printed = cli("show", str(plain), "--json", "--config", str(config_path))
        assert printed.returncode == 0, printed.stderr
        assert without_clock(json.loads(body)) == without_clock(json.loads(printed.stdout))
        assert [event["new_state"] for event in json.loads(body)["history"]][-1] == "done"

        status, _, body = get(f"{base}/jobs/1")
        assert status == 200 and "video analyzed" in body.decode() and "pid 1001" in body.decode()
        assert get(f"{base}/videos/999")[0] == 404 and get(f"{base}/jobs/999")[0] == 404
        assert get(f"{base}/api/videos/999")[0] == 404


def test_only_pictures_named_in_a_manifest_are_served_never_a_path(tmp_path):
    config_path, store = make_lab(tmp_path)
    (tmp_path / "secret.png").write_bytes(b"not for the page")
    video_id = add_video(store, tmp_path, "m.mp4")
    results = deliver_done(store, tmp_path, video_id, {
        "qc_png": "m_qc.png", "escape": "../../secret.png", "absolute": str(tmp_path / "secret.png"),
        "link": "link.png", "keypoints_h5": "mDLC.h5", "hidden": ".m.png", "labeled_video": "m_labeled.mp4"})
    (results / "m_qc.png").write_bytes(PNG)
    write_video(results / "m_labeled.mp4", frames=10)
    (results / "mDLC.h5").write_bytes(b"keypoints")
    (results / ".m.png").write_bytes(PNG)
    (results / "link.png").symlink_to(tmp_path / "secret.png")
    other = add_video(store, tmp_path, "not delivered.mp4")
    with web_server(config_path) as base:
        status, headers, body = get(f"{base}/files/{video_id}/qc_png")
        assert status == 200 and headers["content-type"] == "image/png" and body == PNG
        clip = (results / "m_labeled.mp4").read_bytes()
        status, headers, body = get(f"{base}/files/{video_id}/labeled_video", {"Range": "bytes=0-99"})
        assert status == 206 and headers["content-type"] == "video/mp4" and body == clip[:100]  # seekable
        for path in ["/files/../../etc/passwd", f"/files/{video_id}/../../../etc/passwd",
                     f"/files/{video_id}/..%2F..%2F..%2Fetc%2Fpasswd", f"/files/{video_id}/%2e%2e",
                     "/files/%2e%2e/%2e%2e/etc/passwd", f"/files/{video_id}/escape", f"/files/{video_id}/absolute",
                     f"/files/{video_id}/link", f"/files/{video_id}/keypoints_h5", f"/files/{video_id}/hidden",
                     f"/files/{video_id}/manifest", f"/files/{other}/qc_png", "/files/999/qc_png",
                     "/static/../app.py", "/static/app.py", "/static/..%2Fapp.py", "/etc/passwd"]:
            status, body = raw_get(base, path)
            assert status == 404, path
            assert b"not for the page" not in body and b"root:" not in body and b"import" not in body, path
        _, _, page = get(f"{base}/videos/{video_id}")
        assert f'<img src="/files/{video_id}/qc_png"'.encode() in page
        assert f'<video controls preload="metadata" src="/files/{video_id}/labeled_video"'.encode() in page
        assert b"/files/%d/escape" % video_id not in page and b"/files/%d/link\"" % video_id not in page


def test_off_loopback_it_refuses_to_start_without_a_token(tmp_path):
    config_path, _ = make_lab(tmp_path)
    port = free_port()
    refused = cli("web", "--config", str(config_path), "--listen", f"0.0.0.0:{port}", timeout=60,
                  env={"DLCWATCH_WEB_TOKEN": ""})
    assert refused.returncode == 2
    assert "DLCWATCH_WEB_TOKEN" in refused.stderr and "reverse proxy" in refused.stderr
    with socket.socket() as probe:  # nothing was left listening
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    short = cli("web", "--config", str(config_path), "--listen", f"0.0.0.0:{port}", timeout=60,
                env={"DLCWATCH_WEB_TOKEN": "Zq9-tiny"})
    assert short.returncode == 2 and "too short" in short.stderr and "Zq9-tiny" not in short.stderr
    bad = cli("web", "--config", str(config_path), "--listen", "127.0.0.1", timeout=60)
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr


def test_with_a_token_every_page_asks_for_it(tmp_path):
    config_path, store = make_lab(tmp_path)
    add_video(store, tmp_path, "a.mp4")
    with web_server(config_path, env={"DLCWATCH_WEB_TOKEN": TOKEN}) as base:
        for path in ("/", "/videos", "/videos/1", "/api/status", "/api/videos/1", "/files/1/qc_png"):
            status, _, body = get(base + path)
            assert status == 401 and b"a.mp4" not in body, path
        assert get(base + "/api/status", {"Authorization": f"Bearer {TOKEN}x"})[0] == 401
        status, _, body = get(base + "/api/status", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and json.loads(body)["total"] == 1

        def login(token: str):
            data = urllib.parse.urlencode({"token": token}).encode()
            connection = http.client.HTTPConnection(*urllib.parse.urlsplit(base).netloc.split(":"), timeout=20)
            connection.request("POST", "/login", body=data,
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
            response = connection.getresponse()
            result = response.status, response.getheader("set-cookie"), response.read()
            connection.close()
            return result

        status, cookie, body = login("wrong-token-wrong-token")
        assert status == 401 and cookie is None and b"not the token" in body
        status, cookie, _ = login(TOKEN)
        assert status == 303 and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
        assert TOKEN not in cookie  # the cookie holds a digest, not the token
        status, _, body = get(base + "/videos", {"Cookie": cookie.split(";")[0]})
        assert status == 200 and b"a.mp4" in body and TOKEN.encode() not in body


def test_it_never_writes_and_never_blocks_the_daemon(tmp_path):
    config_path, store = make_lab(tmp_path)
    for index in range(30):
        add_video(store, tmp_path, f"v{index}.mp4")
    video_id = add_video(store, tmp_path, "done.mp4")
    deliver_done(store, tmp_path, video_id, {"qc_png": "done_qc.png"})
    store.close()  # the daemon is stopped: no -wal file, the page must not create one
    database = tmp_path / "state" / "dlcwatch.db"

    def snapshot():
        return (hashlib.sha256(database.read_bytes()).hexdigest(), database.stat().st_mtime_ns,
                sorted(path.name for path in database.parent.iterdir()))

    pages = ["/", "/videos", "/videos?state=queued", "/videos?q=v1", f"/videos/{video_id}", "/jobs/1",
             "/api/status", f"/api/videos/{video_id}"]
    before = snapshot()
    assert before[2] == ["dlcwatch.db"]
    with web_server(config_path) as base:
        for path in pages:
            assert get(base + path)[0] == 200, path
        assert snapshot() == before

        # The daemon runs again: a writer that refuses to wait even a millisecond for a lock.
        stop, started, errors, commits = threading.Event(), threading.Event(), [], [0]

        def write():
            writer = sqlite3.connect(database, isolation_level=None, timeout=0)
            writer.execute("PRAGMA journal_mode = WAL")
            started.set()
            while not stop.is_set():
                try:
                    writer.execute("BEGIN IMMEDIATE")
                    writer.execute("UPDATE videos SET updated = ? WHERE id = 1", (time.time(),))
                    writer.execute("COMMIT")
                    commits[0] += 1
                except sqlite3.OperationalError as error:
                    errors.append(str(error))
                    writer.execute("ROLLBACK") if writer.in_transaction else None
                time.sleep(0.002)
            writer.close()

        thread = threading.Thread(target=write)
        thread.start()
        assert started.wait(timeout=10)
        try:
            for _ in range(5):
                for path in pages:
                    assert get(base + path)[0] == 200, path
        finally:
            stop.set()
            thread.join(timeout=30)
        assert errors == [] and commits[0] > 10


def test_a_missing_locked_or_foreign_database_is_said_and_the_page_recovers(tmp_path):
    config_path, _ = make_lab(tmp_path)
    database = tmp_path / "state" / "dlcwatch.db"
    database.unlink()
    database.with_name("dlcwatch.db-wal").unlink(missing_ok=True)
    database.with_name("dlcwatch.db-shm").unlink(missing_ok=True)
    with web_server(config_path) as base:
        status, _, body = get(base + "/")
        assert status == 503 and b"no state database" in body and b"has the daemon run?" in body
        status, _, body = get(base + "/api/status")
        assert status == 503 and json.loads(body)["kind"] == "missing"

        store = Store(database)  # the daemon starts: the same server now shows it
        add_video(store, tmp_path, "first.mp4")
        status, _, body = get(base + "/")
        assert status == 200 and b"first.mp4" in body

        with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as other:
            other.execute("INSERT INTO migrations (name, applied) VALUES ('0999_from_the_future', 0)")
        status, _, body = get(base + "/")
        assert status == 503 and b"newer dlcwatch" in body and b"0999_from_the_future" in body
        with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as other:
            other.execute("DELETE FROM migrations WHERE name IN ('0999_from_the_future', '0006_staged_path')")
        status, _, body = get(base + "/api/status")
        assert status == 503 and json.loads(body)["kind"] == "schema" and "older" in json.loads(body)["error"]
        with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as other:
            other.execute("INSERT INTO migrations (name, applied) VALUES ('0006_staged_path', 0)")

        store.close()
        # Another program holds the database exclusively: the page says so within its busy timeout.
        holder = sqlite3.connect(database, isolation_level=None)
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE videos SET updated = updated")
        holder.execute("COMMIT")
        started = time.monotonic()
        status, _, body = get(base + "/")
        assert status == 503 and b"locked by another program" in body and time.monotonic() - started < 10
        holder.close()
        assert get(base + "/")[0] == 200

        (tmp_path / "state" / "other.db").write_bytes(b"this is not a database at all" * 100)
        other_config = yaml.safe_load(config_path.read_text())
        other_config["state"]["database"] = str(tmp_path / "state" / "other.db")
        config_path.write_text(yaml.safe_dump(other_config))
    with web_server(config_path) as base:
        status, _, body = get(base + "/")
        assert status == 503 and b"other.db" in body


def test_no_secret_reaches_a_page(tmp_path):
    key = tmp_path / "keys" / "lab_cluster_key"
    webhook = "https://hooks.slack.com/services/T000/B000/very-secret-path"
    password = "smtp-password-1234"
    config_path, store = make_lab(
        tmp_path, notify={"email": {"enabled": True, "host": "smtp.example.edu", "sender": "a@example.edu",
                                    "recipients": ["b@example.edu"], "username": "lab", "password": password},
                          "slack": {"enabled": True, "webhook_url": webhook}},
        output={"ssh": {"identity_file": str(key)}})
    video_id = add_video(store, tmp_path, "s.mp4", S.FAILED, reason=f"posting to {webhook} failed")
    store.set_condition("destination", f"ssh -i {key} refused: login with {password} failed")
    delivered = add_video(store, tmp_path, "t.mp4")
    results = deliver_done(store, tmp_path, delivered, {"qc_png": "t_qc.png"})
    Path(store.job(1).log_path).write_text(f"connecting with {key}\nwebhook {webhook}\n")
    with web_server(config_path, env={"DLCWATCH_WEB_TOKEN": TOKEN}) as base:
        seen = []
        for path in ("/", "/videos", f"/videos/{video_id}", f"/videos/{delivered}", "/jobs/1", "/api/status",
                     f"/api/videos/{video_id}"):
            status, _, body = get(base + path, {"Authorization": f"Bearer {TOKEN}"})
            assert status == 200, path
            seen.append(body.decode())
        text = "\n".join(seen)
        for secret in (webhook, "very-secret-path", password, str(key), TOKEN):
            assert secret not in text, secret
        assert "[redacted]" in text and "s.mp4" in text and str(results) in text


def test_the_video_list_pages_by_id_filters_and_finds_names(tmp_path):
    config_path, store = make_lab(tmp_path)
    names = [f"session{index:03d}.mp4" for index in range(120)]
    for name in names:
        add_video(store, tmp_path, name)
    ete = add_video(store, tmp_path, "Souris_été_ü.MP4", S.QUARANTINED)
    add_video(store, tmp_path, "100%_done_x.mp4", S.DUPLICATE)

    def link(html: str, rel: str) -> str | None:
        found = re.search(rf'href="([^"]*)" rel="{rel}"', html)
        return found.group(1).replace("&amp;", "&") if found else None

    with web_server(config_path) as base:
        for first, summary in (("/videos?state=queued", "120 video(s) queued"),
                               ("/videos?q=SESSION", "120 video(s) matching “SESSION”")):
            pages, url = [], base + first
            while url:
                status, _, body = get(url)
                html = body.decode()
                assert status == 200 and summary in html, url
                pages.append(re.findall(r">(session\d{3}\.mp4)<", html))
                url = base + link(html, "next") if link(html, "next") else None
            assert [name for page in pages for name in page] == list(reversed(names))  # each once, newest first
            assert [len(page) for page in pages] == [50, 50, 20]
            back = []
            while link(html, "prev"):  # and back again to the first page
                html = get(base + link(html, "prev"))[2].decode()
                back.append(re.findall(r">(session\d{3}\.mp4)<", html))
            assert back == pages[-2::-1]

        for query, expected in (("été", ["Souris_été_ü.MP4"]), ("souris_", ["Souris_été_ü.MP4"]),
                                ("100%", ["100%_done_x.mp4"]), ("session11", [f"session11{i}.mp4" for i in range(10)])):
            _, _, body = get(base + "/videos?" + urllib.parse.urlencode({"q": query}))
            html = body.decode()
            found = sorted(name for name in [*names, "Souris_été_ü.MP4", "100%_done_x.mp4"] if f">{name}<" in html)
            assert found == sorted(expected), query
        _, _, body = get(base + "/videos?state=quarantined")
        assert f'href="/videos/{ete}"' in body.decode() and "session000" not in body.decode()
