"""Run Python code with every network attempt refused and written down.

    python no_network.py LOG -m MODULE [ARGS...]
    python no_network.py LOG -c CODE [ARGS...]

An audit hook (PEP 578) sees each name lookup, socket connection and urllib request before it
happens: it appends one line to LOG and raises, so nothing leaves the machine and a test can tell
that something tried. Connections to local (AF_UNIX) sockets are not network and pass.
"""

import runpy
import socket
import sys

NETWORK_EVENTS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr",
                  "socket.connect", "urllib.Request", "http.client.connect")


class NetworkRefused(RuntimeError):
    """Code under test tried to reach the network."""


def refuse_network(log_path: str) -> None:
    """From now on, every network attempt of this process is written to `log_path` and raises NetworkRefused."""

    def hook(event, arguments):
        if event not in NETWORK_EVENTS:
            return
        if event == "socket.connect" and arguments[0].family == socket.AF_UNIX:
            return
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"{event} {arguments[1:] if event == 'socket.connect' else arguments!r}\n")
        raise NetworkRefused(f"network access refused by the test: {event}")

    sys.addaudithook(hook)


def main() -> None:
    log_path, mode, target, *arguments = sys.argv[1:]
    refuse_network(log_path)
    if mode == "-m":
        sys.argv = [target, *arguments]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    elif mode == "-c":
        sys.argv = ["-c", *arguments]
        exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})
    else:
        sys.exit(f"usage: {sys.argv[0]} LOG -m MODULE [ARGS...] | LOG -c CODE [ARGS...]")


if __name__ == "__main__":
    main()
