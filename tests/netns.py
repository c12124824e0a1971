"""A private network for servers started by tests: a Linux network namespace with only the
loopback interface, so a server that binds every interface (Milvus, Ray) is reachable from
the tests and from nothing else. The test process enters it around each test that talks to
such a server and leaves it afterwards; the namespace (and every server in it) lives until
the session ends."""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns(CLONE_NEWNET) failed")


class PrivateNetwork:
    """One network namespace with loopback up; ``with net.inside():`` runs code in it."""

    def __init__(self) -> None:
        self.home = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.depth = 0
        if _libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            os.close(self.home)
            raise OSError(err, "unshare(CLONE_NEWNET) failed: the tests need root or CAP_SYS_ADMIN")
        try:
            self.fd = os.open("/proc/self/ns/net", os.O_RDONLY)
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        finally:
            _setns(self.home)

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """Run the block in the namespace (re-entrant: the outermost block leaves it)."""
        self.depth += 1
        if self.depth == 1:
            _setns(self.fd)
        try:
            yield
        finally:
            self.depth -= 1
            if self.depth == 0:
                _setns(self.home)

    def interfaces(self) -> list[str]:
        """The interfaces that have an address inside the namespace."""
        with self.inside():
            out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True)
        return sorted({line.split()[1] for line in out.stdout.splitlines()})

    def listening_outside(self) -> str:
        """``ss -ltnp`` as seen from the machine's own network (outside the namespace)."""
        return subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True,
                              preexec_fn=lambda: _setns(self.home)).stdout

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.home)
