"""Linux network namespaces for deployment tests: a server, hamlets on a bridge, no host addresses.

`District` makes one server namespace with a bridge (``10.77.0.1/24`` plus extra addresses)
and N hamlet namespaces, each joined to the bridge by a veth pair whose ends live only
inside the namespaces; a hamlet resolves names through ``/etc/netns/<ns>/hosts`` (which
``ip netns exec`` bind-mounts over ``/etc/hosts``). `NetNs.call` runs Python code in a
namespace from a thread that entered it (``setns``): sockets it opens, and threads it
starts, stay there. `District.close` removes everything, also after a failure.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
SUBNET = "10.77.0"


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (ip netns, veth pairs)"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    probe = f"tprobe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"ip netns add is not permitted here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class NetNs:
    """One named namespace, with a worker thread inside it for Python code."""

    def __init__(self, name: str) -> None:
        self.name = name
        _ip("netns", "add", name)
        _ip("-n", name, "link", "set", "lo", "up")
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def _enter(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.name} failed")
        finally:
            os.close(fd)

    def call(self, fn: Callable[..., T], *args: object, timeout: float = 60.0) -> T:
        """Run ``fn(*args)`` inside the namespace and return its result."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, initializer=self._enter)
        return self._pool.submit(fn, *args).result(timeout)

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` prefixed to run inside the namespace (``ip netns exec``)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def write_hosts(self, hosts: dict[str, str]) -> None:
        """The namespace's ``/etc/hosts`` (name -> address)."""
        folder = Path("/etc/netns") / self.name
        folder.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost", *(f"{address} {name}" for name, address in hosts.items())]
        (folder / "hosts").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def close(self) -> None:
        """Stop the worker (its thread leaves with it) and delete the namespace."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(Path("/etc/netns") / self.name, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)


class District:
    """A server namespace and ``hamlets`` hamlet namespaces on one bridge."""

    def __init__(self, hamlets: int, *, extra_server_addresses: int = 1) -> None:
        tag = secrets.token_hex(3)
        self.namespaces: list[NetNs] = []
        try:
            self.server = self._add(f"tsrv-{tag}")
            _ip("-n", self.server.name, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.server.name, "link", "set", "br0", "up")
            self.server_addresses = [f"{SUBNET}.{1 + i}" for i in range(1 + extra_server_addresses)]
            for address in self.server_addresses:
                _ip("-n", self.server.name, "addr", "add", f"{address}/24", "dev", "br0")
            self.hamlets: list[NetNs] = []
            for number in range(1, hamlets + 1):
                hamlet = self._add(f"thm{number}-{tag}")
                port = f"h{number}"
                _ip(
                    "link",
                    "add",
                    "eth0",
                    "netns",
                    hamlet.name,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    port,
                    "netns",
                    self.server.name,
                )
                _ip("-n", self.server.name, "link", "set", port, "master", "br0", "up")
                _ip("-n", hamlet.name, "addr", "add", f"{SUBNET}.{10 + number}/24", "dev", "eth0")
                _ip("-n", hamlet.name, "link", "set", "eth0", "up")
                self.hamlets.append(hamlet)
        except BaseException:
            self.close()
            raise

    def _add(self, name: str) -> NetNs:
        ns = NetNs(name)
        self.namespaces.append(ns)
        return ns

    def close(self) -> None:
        """Delete every namespace (veth pairs and the bridge go with them)."""
        for ns in reversed(self.namespaces):
            ns.close()
