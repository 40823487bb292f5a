"""Where the audio probe gets its PCM: ``arecord``, a WAV or raw file, a FIFO, a TCP stream.

Every source yields raw signed 16-bit little-endian mono samples at ``rate``; ``read``
returns ``b""`` when the stream ended and raises :class:`AudioSourceError` when it broke
or stalled for ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shlex
import threading
import time
import wave
from typing import BinaryIO
from urllib.parse import urlsplit


class AudioSourceError(Exception):
    """The source cannot be opened, broke, or delivered nothing in time."""


def split_command(command: str) -> list[str]:
    """A capture command line as argv, split like a shell would.

    Raises:
        ValueError: the command is empty or its quotes do not close.
    """
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ValueError(f"arecord_command {command!r}: {exc}") from None
    if not argv:
        raise ValueError("arecord_command is empty")
    return argv


class PcmSource:
    """Base of the sources.

    Attributes:
        label: how error messages name the source.
        rate: samples per second (a WAV file's header overrides the configured rate).
        timeout_s: longest wait for data before the source counts as stalled.
    """

    def __init__(self, label: str, rate: int, timeout_s: float) -> None:
        self.label = label
        self.rate = rate
        self.timeout_s = timeout_s

    async def open(self) -> None:
        """Open the source."""

    async def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of PCM; ``b""`` at the end of the stream."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release the source; safe to call twice."""


class TcpSource(PcmSource):
    """``tcp://host:port``: a raw PCM stream (a receiver's line-out bridge, the HIL simulator)."""

    def __init__(self, host: str, port: int, rate: int, timeout_s: float) -> None:
        super().__init__(f"tcp://{host}:{port}", rate, timeout_s)
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise AudioSourceError("cannot connect: %s" % (exc or "timed out")) from None

    async def read(self, size: int) -> bytes:
        assert self._reader is not None
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._reader.read(size)
        except TimeoutError:
            raise AudioSourceError(f"no audio for {self.timeout_s:.1f} s") from None
        except OSError as exc:
            raise AudioSourceError(f"connection broke: {exc}") from None

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            # wait_closed() can wait for ever on a peer that never answers the close.
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(2.0):
                    await writer.wait_closed()


class ArecordSource(PcmSource):
    """``arecord``: the sound card that samples the receiver's audio output (ALSA).

    ``command`` is the capture program with any options of its own, split like a shell
    would (``arecord --buffer-time=500000``); the format and device options follow them.
    """

    def __init__(self, command: str, device: str, rate: int, timeout_s: float) -> None:
        super().__init__(f"arecord -D {device}", rate, timeout_s)
        self.argv = [
            *split_command(command),
            "-q",
            "-t",
            "raw",
            "-f",
            "S16_LE",
            "-c",
            "1",
            "-r",
            str(rate),
            "-D",
            device,
        ]
        self._process: asyncio.subprocess.Process | None = None

    async def open(self) -> None:
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise AudioSourceError(f"cannot run {self.argv[0]}: {exc}") from None

    async def read(self, size: int) -> bytes:
        process = self._process
        assert process is not None
        assert process.stdout is not None
        try:
            async with asyncio.timeout(self.timeout_s):
                data = await process.stdout.read(size)
        except TimeoutError:
            raise AudioSourceError(f"no audio for {self.timeout_s:.1f} s") from None
        if data:
            return data
        await self._wait_exit(process)
        message = b""
        if process.stderr is not None:
            message = await process.stderr.read(512)
        why = message.decode("utf-8", "replace").strip() or "no message"
        raise AudioSourceError(f"arecord exited with code {process.returncode}: {why}")

    async def _wait_exit(self, process: asyncio.subprocess.Process) -> None:
        # asyncio's wait() returns only once the pipes are closed too, and a stdout pipe
        # whose reader fell behind is paused and would never see its EOF: read it empty
        # meanwhile (this also unblocks an arecord stuck writing into a full pipe).
        drain = asyncio.create_task(_discard(process.stdout))
        try:
            try:
                async with asyncio.timeout(2.0):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        finally:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain

    async def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        await self._wait_exit(process)


async def _discard(stream: asyncio.StreamReader | None) -> None:
    """Read ``stream`` to its end, throwing the data away."""
    if stream is None:
        return
    with contextlib.suppress(OSError):
        while await stream.read(65536):
            pass


class FileSource(PcmSource):
    """``file:PATH``: a WAV file (16-bit mono, any rate) or raw S16_LE mono at ``rate``.

    Args:
        pace: deliver audio no faster than real time, as a sound card would; off, the
            file is measured as fast as it can be read.
    """

    def __init__(self, path: str, rate: int, timeout_s: float, pace: bool) -> None:
        super().__init__(f"file:{path}", rate, timeout_s)
        self.path = path
        self.pace = pace
        self._raw: BinaryIO | None = None
        self._wav: wave.Wave_read | None = None
        self._delivered = 0
        self._opened_at = 0.0

    def _open_blocking(self) -> None:
        with open(self.path, "rb") as probe:
            is_wav = probe.read(4) == b"RIFF"
        if not is_wav:
            self._raw = open(self.path, "rb")  # noqa: SIM115 - held open across reads
            return
        try:
            wav = wave.open(self.path, "rb")  # noqa: SIM115 - held open across reads
        except (wave.Error, EOFError) as exc:
            raise AudioSourceError(f"not a readable WAV file: {exc}") from None
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            wav.close()
            raise AudioSourceError(
                f"WAV must be 16-bit mono, got {8 * wav.getsampwidth()}-bit"
                f" with {wav.getnchannels()} channels"
            )
        self._wav = wav
        self.rate = wav.getframerate()

    async def open(self) -> None:
        try:
            await asyncio.to_thread(self._open_blocking)
        except OSError as exc:
            raise AudioSourceError(f"cannot open: {exc}") from None
        self._delivered = 0
        self._opened_at = time.monotonic()

    def _read_blocking(self, size: int) -> bytes:
        if self._wav is not None:
            return self._wav.readframes(size // 2)
        assert self._raw is not None
        return self._raw.read(size - size % 2)

    async def read(self, size: int) -> bytes:
        if self.pace:
            ahead = self._delivered / (2 * self.rate) - (time.monotonic() - self._opened_at)
            if ahead > 0:
                await asyncio.sleep(ahead)
        try:
            data = await asyncio.to_thread(self._read_blocking, size)
        except (OSError, wave.Error, EOFError) as exc:
            raise AudioSourceError(f"read failed: {exc}") from None
        self._delivered += len(data)
        return data

    async def close(self) -> None:
        wav, self._wav = self._wav, None
        raw, self._raw = self._raw, None
        if wav is not None:
            wav.close()
        if raw is not None:
            raw.close()


class FifoSource(PcmSource):
    """``fifo:PATH``: a named pipe the receiver software writes raw S16_LE mono into.

    The pipe is opened without waiting for a writer. Before the first byte, "no writer"
    just means waiting (up to ``timeout_s``); once audio has flowed, the writer closing
    its end is the end of the stream.
    """

    def __init__(self, path: str, rate: int, timeout_s: float) -> None:
        super().__init__(f"fifo:{path}", rate, timeout_s)
        self.path = path
        self._fd: int | None = None
        self._seen_data = False
        self._closing = False
        self._in_flight = False
        self._lock = threading.Lock()

    async def open(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise AudioSourceError(f"cannot open: {exc}") from None
        self._seen_data = False
        self._closing = False

    def _read_blocking(self, fd: int, size: int) -> bytes:
        try:
            return self._read_until_deadline(fd, size)
        finally:
            with self._lock:
                self._in_flight = False
                if self._closing:
                    # close() ran while we were reading: the fd is ours to close, so its
                    # number cannot be reused under a select() still running here.
                    os.close(fd)

    def _read_until_deadline(self, fd: int, size: int) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        while not self._closing:
            left = deadline - time.monotonic()
            if left <= 0:
                what = "no audio" if self._seen_data else "no writer on the pipe"
                raise AudioSourceError(f"{what} for {self.timeout_s:.1f} s")
            ready, _, _ = select.select([fd], [], [], min(left, 0.1))
            if not ready:
                continue
            try:
                data = os.read(fd, size)
            except BlockingIOError:
                continue
            if data:
                self._seen_data = True
                return data
            if self._seen_data:
                return b""
            time.sleep(0.02)  # no writer yet: the pipe reads as EOF until one opens it
        return b""

    async def read(self, size: int) -> bytes:
        assert self._fd is not None
        with self._lock:
            self._in_flight = True
        try:
            return await asyncio.to_thread(self._read_blocking, self._fd, size)
        except OSError as exc:
            raise AudioSourceError(f"read failed: {exc}") from None

    async def close(self) -> None:
        fd, self._fd = self._fd, None
        with self._lock:
            self._closing = True
            if fd is not None and not self._in_flight:
                os.close(fd)


def make_source(
    spec: str, *, rate: int, device: str, timeout_s: float, arecord_command: str, pace: bool
) -> PcmSource:
    """Build the source a config's ``source`` names.

    Raises:
        ValueError: the spec is none of ``arecord``, ``arecord:DEVICE``, ``file:PATH``,
            ``fifo:PATH``, ``tcp://HOST:PORT``.
    """
    if spec == "arecord" or spec.startswith("arecord:"):
        return ArecordSource(arecord_command, spec[len("arecord:") :] or device, rate, timeout_s)
    if spec.startswith("file:") and len(spec) > 5:
        return FileSource(spec[5:], rate, timeout_s, pace)
    if spec.startswith("fifo:") and len(spec) > 5:
        return FifoSource(spec[5:], rate, timeout_s)
    if spec.startswith("tcp://"):
        parts = urlsplit(spec)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.hostname and port:
            return TcpSource(parts.hostname, port, rate, timeout_s)
    raise ValueError(
        f"audio source must be arecord, arecord:DEVICE, file:PATH, fifo:PATH or tcp://HOST:PORT, got {spec!r}"
    )
