"""ssh building blocks against a real sshd on 127.0.0.1: arguments arrive literally, exit codes
pass through, and "cannot reach the host" is told apart from "the command said no"."""

import stat

import pytest

import sshd
from dlcwatch.errors import TransferError
from dlcwatch.transport.ssh import SshHost, SshUnreachable, socket_folder, ssh_runner


@pytest.fixture
def ssh_server(tmp_path):
    with sshd.serving(tmp_path / "sshd", extra_config=["SetEnv DLCWATCH_GREETING=bonjour"], start=False) as server:
        yield server


@pytest.fixture
def host(ssh_host):
    return ssh_host  # conftest's, reaching this module's server (its control folder has a non-ASCII name)


def test_arguments_arrive_literally(ssh_server, host, tmp_path):
    ssh_server.start()
    marker = tmp_path / "x"
    name = f"a b'c;$(touch {marker}) `touch {marker}` \"q\" * ~ $HOME \\"
    result = ssh_runner(host)(["printf", "%s|", name, "", "été"], 30)
    assert (result.code, result.stdout) == (0, f"{name}||été|"), result.stderr
    assert not marker.exists()


def test_exit_codes_pass_through(ssh_server, host):
    ssh_server.start()
    runner = ssh_runner(host)
    answer = runner(["sh", "-c", "echo out; echo err >&2; exit 3"], 30)
    assert (answer.code, answer.stdout, answer.stderr, answer.ok, answer.unreachable) == (3, "out\n", "err\n", False, False)
    missing = runner(["no-such-command-dlcwatch"], 30)
    assert missing.code == 127 and "not found" in missing.stderr and not missing.unreachable
    slow = runner(["sleep", "10"], 1)
    assert slow.code == 124 and slow.timed_out and not slow.unreachable
    assert runner([], 1).code == 127


def test_a_stopped_server_is_unreachable_not_a_refusal(ssh_server, host):
    result = ssh_runner(host)(["true"], 30)  # never started
    assert result.code == 255 and result.unreachable and result.stdout == ""
    assert result.stderr.startswith(f"cannot reach {host.host} over ssh: ") and "refused" in result.stderr.lower()
    with pytest.raises(SshUnreachable, match="cannot connect"):
        host.run("true")


def test_a_refused_login_is_unreachable(ssh_server, tmp_path):
    ssh_server.start()
    stranger = SshHost(f"{ssh_server.user}@127.0.0.1", tmp_path / "control", identity_file=str(tmp_path / "no-key"),
                       port=ssh_server.port)
    result = ssh_runner(stranger)(["true"], 30)
    assert result.code == 255 and result.unreachable and result.stderr.startswith(f"cannot reach {stranger.host} over ssh: ")
    assert "permission denied" in result.stderr.lower()


def test_run_returns_output_or_says_why(ssh_server, host, tmp_path):
    ssh_server.start()
    assert host.run("printf %s " + "'a b'") == "a b"
    with pytest.raises(TransferError, match="no such thing") as caught:
        host.run("echo no such thing >&2; exit 2")
    assert not isinstance(caught.value, SshUnreachable)
    assert host.run("printenv DLCWATCH_GREETING") == "bonjour\n"  # extra sshd_config lines apply


def test_folders_are_made_private_before_use(host):
    argv = host.wrap(["squeue", "--me"])
    assert argv[-2:] == [host.host, "squeue --me"]
    assert (host.control_dir).is_dir()
    assert stat.S_IMODE(socket_folder().stat().st_mode) == 0o700
    assert f"UserKnownHostsFile={host.control_dir}/known_hosts" in argv
    assert ["-i", host.identity_file] == argv[argv.index("-i"):argv.index("-i") + 2]
    with pytest.raises(ValueError):
        host.wrap([])
