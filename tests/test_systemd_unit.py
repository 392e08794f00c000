"""The systemd unit: the settings the daemon relies on, and `systemd-analyze verify`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "dlcwatch.service"
EXEC = "/opt/dlcwatch/venv/bin/dlcwatch"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Given unit file text, return {section: {key: [values in order]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"setting outside a section: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


@pytest.mark.parametrize("key, value", [
    ("Type", "notify"),
    ("NotifyAccess", "main"),
    ("ExecStart", f"{EXEC} run --config /etc/dlcwatch/config.yaml"),
    ("Restart", "on-failure"),
    ("User", "dlcwatch"),
    ("Group", "dlcwatch"),
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("PrivateTmp", "yes"),
    ("ProtectHome", "read-only"),
    ("KillSignal", "SIGTERM"),
    ("TimeoutStopSec", "30"),
    ("StateDirectory", "dlcwatch"),
])
def test_service_setting(unit, key, value):
    assert unit["Service"][key] == [value]


def test_watchdog_and_paths(unit):
    (watchdog,) = unit["Service"]["WatchdogSec"]
    assert re.fullmatch(r"\d+", watchdog) and 30 <= int(watchdog) <= 600
    writable = " ".join(unit["Service"]["ReadWritePaths"]).split()
    assert writable == ["/var/lib/dlcwatch", "/scratch/dlcwatch", "/data/dlcwatch-results"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def verify(path: Path) -> tuple[int, list[str]]:
    """Given a unit file, run systemd-analyze verify; return (exit code, output lines)."""
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True,
                            timeout=30)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return result.returncode, lines


needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                           reason="systemd-analyze is not installed (apt-get install systemd)")


def runnable_text(unit: Path) -> str:
    """Given a unit file, return its text starting an existing binary (true) with the same arguments:
    verify refuses a missing ExecStart binary, and /opt/dlcwatch exists only on the server."""
    return unit.read_text().replace(f"ExecStart={EXEC} ", f"ExecStart={shutil.which('true')} ")


def runnable_copy(unit: Path, folder: Path) -> Path:
    """Given a unit file and a folder, write runnable_text(unit) there under the unit's name; return it."""
    copy = folder / unit.name
    copy.write_text(runnable_text(unit))
    return copy


@needs_systemd_analyze
@pytest.mark.parametrize("unit_name,command", [("dlcwatch.service", "run"), ("dlcwatch-web.service", "web")])
def test_systemd_analyze_verify(unit_name, command, tmp_path):
    # Unknown keys and bad values are mere warnings (exit code 0), hence: no output at all.
    copy = runnable_copy(UNIT.with_name(unit_name), tmp_path)
    assert f"ExecStart={shutil.which('true')} {command} --config" in copy.read_text()
    code, lines = verify(copy)
    assert code == 0 and lines == [], lines


@needs_systemd_analyze
def test_systemd_analyze_only_misses_the_binary_in_the_original(tmp_path):
    copy = tmp_path / "dlcwatch.service"
    shutil.copy(UNIT, copy)
    code, lines = verify(copy)
    assert lines and all(EXEC in line and "not executable" in line for line in lines), lines


@needs_systemd_analyze
def test_verify_check_catches_mistakes(tmp_path):
    # The check above would fail on a typo: systemd-analyze prints warnings for it.
    bad = tmp_path / "dlcwatch.service"
    bad.write_text(runnable_text(UNIT).replace("WatchdogSec=", "WatchdogSecs="))
    code, lines = verify(bad)
    assert any("WatchdogSecs" in line for line in lines), lines


MAX_EXPOSURE = 3.5


def security_score(path: Path) -> float:
    """Given a unit file, return the overall exposure `systemd-analyze security --offline=yes` gives it."""
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(path)],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


@needs_systemd_analyze
def test_security_exposure_is_at_most_3_5(tmp_path):
    assert security_score(runnable_copy(UNIT, tmp_path)) <= MAX_EXPOSURE


@needs_systemd_analyze
def test_security_score_notices_a_weaker_unit(tmp_path):
    # The score above could not fail if the parsing were wrong: the same unit without its
    # hardening block must score well above the limit.
    text = runnable_text(UNIT)
    weak = "\n".join(line for line in text.splitlines()
                     if not line.startswith(("CapabilityBoundingSet", "SystemCall", "Protect", "Restrict",
                                             "Private", "Device", "LockPersonality", "RemoveIPC")))
    copy = tmp_path / "dlcwatch.service"
    copy.write_text(weak)
    assert security_score(copy) > MAX_EXPOSURE + 2


def test_hardening_keeps_gpu_jit_and_network(unit):
    service = unit["Service"]
    # The local executor needs the GPU; PyTorch's JIT needs writable+executable memory.
    assert "MemoryDenyWriteExecute" not in service and "PrivateDevices" not in service
    assert {"char-nvidia-frontend rw", "char-nvidia-uvm rw"} <= set(service["DeviceAllow"])
    # ssh (cluster, remote results), SMTP and HTTPS (Slack) need IPv4/IPv6 sockets and the network.
    families = " ".join(service["RestrictAddressFamilies"]).split()
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= set(families)
    assert "PrivateNetwork" not in service and "IPAddressDeny" not in service
    assert service["CapabilityBoundingSet"] == [""]
    assert service["SystemCallFilter"][0] == "@system-service"
    assert service["SystemCallErrorNumber"] == ["EPERM"]


WEB_UNIT = UNIT.with_name("dlcwatch-web.service")


def test_web_unit_reads_only_and_follows_the_daemon():
    web = parse_unit(WEB_UNIT.read_text())
    assert "dlcwatch.service" in " ".join(web["Unit"]["After"]).split()
    assert web["Service"]["ExecStart"] == [f"{EXEC} web --config /etc/dlcwatch/config.yaml"]
    assert web["Service"]["ProtectSystem"] == ["strict"]
    # The page never writes: nothing is writable for it, not even a state directory.
    assert not {"ReadWritePaths", "StateDirectory", "LogsDirectory", "CacheDirectory"} & set(web["Service"])
    assert web["Service"]["User"] == ["dlcwatch"] and web["Service"]["NoNewPrivileges"] == ["yes"]
    # Its token only; the daemon's SMTP password and webhook stay out of its environment.
    assert web["Service"]["EnvironmentFile"] == ["-/etc/dlcwatch/web.env"]
    assert web["Install"]["WantedBy"] == ["multi-user.target"]


@needs_systemd_analyze
def test_web_unit_exposure_is_at_most_2(tmp_path):
    assert security_score(runnable_copy(WEB_UNIT, tmp_path)) <= 2.0
