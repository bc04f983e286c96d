"""Imported at start-up by every Python process the tests launch (their PYTHONPATH starts here): a lookup of or a
connection to any host but this machine is refused, and reported on stderr, so a test fails when a stage reaches
for the network it must not need (a local model looked up on the hub, a download where a file was given)."""

import socket
import sys

MARK = "network access refused by the tests:"
LOCAL = {"localhost", "127.0.0.1", "::1", None}

_getaddrinfo, _connect = socket.getaddrinfo, socket.socket.connect


def _refuse(host) -> None:
    sys.stderr.write(f"{MARK} {host}\n")
    sys.stderr.flush()
    raise OSError(f"{MARK} {host}")


def getaddrinfo(host, *args, **kwargs):
    if host not in LOCAL:
        _refuse(host)
    return _getaddrinfo(host, *args, **kwargs)


def connect(self, address):
    if isinstance(address, tuple) and address[0] not in LOCAL:
        _refuse(address[0])
    return _connect(self, address)


socket.getaddrinfo = getaddrinfo
socket.socket.connect = connect
