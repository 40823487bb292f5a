"""Disk full on the device: the agent's state dir on a tiny tmpfs.

Mounting needs root (CAP_SYS_ADMIN); where it is not permitted :class:`DiskFaultUnavailable`
says why, and the pytest fixture turns that into a skip with the same reason.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


class DiskFaultUnavailable(RuntimeError):
    """This machine cannot mount a tmpfs for the test (the message says why)."""


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


@contextlib.contextmanager
def tiny_filesystem(directory: str | os.PathLike[str], size: str = "256k") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` on ``directory`` for the block, then unmount it.

    Args:
        directory: created if missing; must be empty (its content is hidden meanwhile).
        size: tmpfs size (``256k``, ``1m``).

    Raises:
        DiskFaultUnavailable: not root, or the kernel refused the mount.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise DiskFaultUnavailable(f"mounting a {size} tmpfs needs root (running as uid {os.geteuid()})")
    done = _run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)])
    if done.returncode != 0:
        raise DiskFaultUnavailable(
            f"mount -t tmpfs on {path} failed: {done.stderr.strip() or done.returncode}"
        )
    try:
        yield path
    finally:
        # Lazy unmount: a process (the agent) may still hold files open in it.
        _run(["umount", "-l", str(path)])


def fill(directory: str | os.PathLike[str], leave_bytes: int = 0) -> int:
    """Fill the filesystem of ``directory`` until at most ``leave_bytes`` are free.

    Returns:
        Bytes written into ``directory/filler``.
    """
    target = Path(directory) / "filler"
    written = 0
    chunk = b"\0" * 4096
    with target.open("ab") as handle:
        while True:
            stats = os.statvfs(directory)
            free = stats.f_bavail * stats.f_frsize
            if free <= leave_bytes:
                break
            size = max(1, min(len(chunk), free - leave_bytes))
            try:
                handle.write(chunk[:size])
                handle.flush()
            except OSError:
                break
            written += size
    return written


def free_space(directory: str | os.PathLike[str]) -> None:
    """Remove what :func:`fill` wrote (the technician cleaned the card)."""
    with contextlib.suppress(FileNotFoundError):
        (Path(directory) / "filler").unlink()


def remount(directory: str | os.PathLike[str], *, read_only: bool) -> None:
    """Remount the tmpfs on ``directory`` read-only (an SD card the kernel gave up on after
    I/O errors) or read-write again (the card after fsck at the next boot).

    Raises:
        DiskFaultUnavailable: the kernel refused (not root, or not a mount point).
    """
    mode = "ro" if read_only else "rw"
    done = _run(["mount", "-o", f"remount,{mode}", str(directory)])
    if done.returncode != 0:
        raise DiskFaultUnavailable(
            f"remount,{mode} of {directory} failed: {done.stderr.strip() or done.returncode}"
        )
