"""ssh building blocks against a real sshd on 127.0.0.1: arguments arrive literally, exit codes
pass through, and "cannot reach the host" is told apart from "the command said no"."""

import stat

import pytest

import sshd
from dlcwatch.errors import TransferError
from dlcwatch.ssh import SshHost, SshUnreachable, socket_folder, ssh_runner


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
    code, out, err = ssh_runner(host)(["printf", "%s|", name, "", "été"], 30)
    assert (code, out) == (0, f"{name}||été|"), err
    assert not marker.exists()


def test_exit_codes_pass_through(ssh_server, host):
    ssh_server.start()
    runner = ssh_runner(host)
    assert runner(["sh", "-c", "echo out; echo err >&2; exit 3"], 30) == (3, "out\n", "err\n")
    code, _, err = runner(["no-such-command-dlcwatch"], 30)
    assert code == 127 and "not found" in err
    assert runner(["sleep", "10"], 1)[0] == 124
    assert runner([], 1)[0] == 127


def test_a_stopped_server_is_unreachable_not_a_refusal(ssh_server, host):
    code, out, err = ssh_runner(host)(["true"], 30)  # never started
    assert code == 255 and out == ""
    assert err.startswith(f"cannot reach {host.host} over ssh: ") and "refused" in err.lower()
    with pytest.raises(SshUnreachable, match="cannot connect"):
        host.run("true")


def test_a_refused_login_is_unreachable(ssh_server, tmp_path):
    ssh_server.start()
    stranger = SshHost(f"{ssh_server.user}@127.0.0.1", tmp_path / "control", identity_file=str(tmp_path / "no-key"),
                       port=ssh_server.port)
    code, _, err = ssh_runner(stranger)(["true"], 30)
    assert code == 255 and err.startswith(f"cannot reach {stranger.host} over ssh: ")
    assert "permission denied" in err.lower()


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
