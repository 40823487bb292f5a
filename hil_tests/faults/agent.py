"""The real agent as a child process, with the ways a field device stops.

:class:`AgentProcess` writes an ``agent.toml`` for one simulated device and runs
``tincoso-agent --config FILE`` (log to a file). Faults:

* ``power_cut()``: SIGKILL, no clean-shutdown marker, as when the pole loses mains; then
  ``restore()`` boots it again with a NEW boot id (written to ``boot_id_file``);
* ``crash()``: SIGKILL without a reboot; ``restart()`` starts it on the same boot id;
* ``stop()``: SIGTERM, the clean shutdown path, waits for the exit.

Before each restart the queue's high-water mark of the ending run is recorded, so
``produced()`` lists every seq the device allocated in every boot, for the audit.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from hil_tests.audit import QueueMark, read_agent_queue
from hil_tests.faults._process import ChildProcess
from hil_tests.faults._toml import dumps

QUEUE_FILE = "queue.sqlite3"  # agent.runtime.QUEUE_FILE


class AgentUnavailable(RuntimeError):
    """The agent (or a hook this fault needs) is not in this build; the message says what."""


def agent_command() -> list[str]:
    """How to run the agent: the ``tincoso-agent`` script beside this Python, or ``-m agent.cli``.

    Raises:
        AgentUnavailable: ``agent.cli`` does not exist yet.
    """
    script = Path(sys.executable).with_name("tincoso-agent")
    try:
        import agent.cli  # noqa: F401  (only: is it there?)
    except ImportError as exc:
        raise AgentUnavailable(f"agent.cli cannot be imported: {exc}") from exc
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "agent.cli"]


def new_boot_id() -> str:
    """A fresh boot id in the kernel's format (a UUID)."""
    return str(uuid.uuid4())


class AgentProcess:
    """One device's agent, run as a subprocess against simulators and a broker (or proxy).

    Args:
        workdir: holds ``agent.toml``, ``agent.log``, ``boot_id`` and ``state/``.
        device_id: the device id (registry and topics).
        kind: ``speaker_cluster``, ``eboard`` or ``district_led``.
        broker_port: MQTT port the agent connects to (a :class:`TcpProxy`'s port for network faults).
        broker_host: MQTT host.
        probes: ``[probes.<name>]`` sections, e.g. ``SpeakerCluster.probe_urls()`` mapped to
            the agent's keys (see :func:`hil_tests.rig.probe_sections`); a ``system`` probe
            pointing at ``boot_id_file`` is added unless given.
        sections: more top-level sections merged over the defaults (``reporting``,
            ``queue``, ``mqtt``, ``clock``, ``commands``).
        state_dir: the agent's state directory (default ``workdir/state``).
        clock_offset_s: skew of the device's wall clock in seconds (``[clock] offset_s``);
            an agent without that hook makes ``start()`` raise :class:`AgentUnavailable`.
        log_level: agent log level.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        device_id: str,
        kind: str,
        broker_port: int,
        *,
        broker_host: str = "127.0.0.1",
        probes: Mapping[str, Mapping[str, Any]] | None = None,
        sections: Mapping[str, Mapping[str, Any]] | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        clock_offset_s: float | None = None,
        log_level: str = "INFO",
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.device_id = device_id
        self.kind = kind
        self.broker_host = broker_host
        self.broker_port = broker_port
        self.state_dir = Path(state_dir) if state_dir is not None else self.workdir / "state"
        self.config_path = self.workdir / "agent.toml"
        self.log_path = self.workdir / "agent.log"
        self.boot_id_file = self.workdir / "boot_id"
        self.log_level = log_level
        self.clock_offset_s = clock_offset_s
        self.probes: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (probes or {}).items()}
        self.sections: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (sections or {}).items()}
        self.boot_id = new_boot_id()
        self.boots: list[QueueMark] = []
        self.process = ChildProcess(f"agent {device_id}", self.log_path, self.workdir)

    # -- config --------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The config the agent gets, as a dict (the TOML is rendered from it)."""
        probes = {k: dict(v) for k, v in self.probes.items()}
        system = probes.setdefault("system", {})
        system.setdefault("boot_id_path", str(self.boot_id_file))
        system.setdefault("state_dir", str(self.state_dir))
        config: dict[str, Any] = {
            "device": {"id": self.device_id, "kind": self.kind, "state_dir": str(self.state_dir)},
            "mqtt": {
                "host": self.broker_host,
                "port": self.broker_port,
                "keepalive_s": 5,
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 2.0,
                "publish_timeout_s": 5.0,
            },
            "reporting": {"heartbeat_s": 2.0, "snapshot_s": 5.0, "poll_s": 0.5, "jitter": 0.0},
            "clock": {"sync_check": "none"},
            "probes": probes,
        }
        if self.clock_offset_s is not None:
            config["clock"]["offset_s"] = self.clock_offset_s
        for name, values in self.sections.items():
            config.setdefault(name, {}).update(values)
        return config

    def write_config(self) -> Path:
        """Write ``agent.toml`` and the boot id file; return the config path.

        Raises:
            AgentUnavailable: the agent's config loader rejects a key the rig needs (for
                example a clock-offset hook this agent build lacks); the message names it.
        """
        config = self.config()
        try:
            from agent.config import AgentConfig, ConfigError
        except ImportError as exc:
            raise AgentUnavailable(f"agent.config cannot be imported: {exc}") from exc
        try:
            AgentConfig(config, str(self.config_path))
        except ConfigError as exc:
            raise AgentUnavailable(f"the agent rejects the rig's config: {exc}") from exc
        self.config_path.write_text(dumps(config), encoding="utf-8")
        self.boot_id_file.write_text(self.boot_id + "\n", encoding="ascii")
        return self.config_path

    # -- life cycle ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """The agent process is alive."""
        return self.process.running

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self.process.pid

    @property
    def starts(self) -> int:
        """How many times the agent was launched."""
        return self.process.starts

    @property
    def queue_path(self) -> Path:
        """The agent's durable queue database."""
        return self.state_dir / QUEUE_FILE

    def start(self) -> Self:
        """Write the config and launch the agent (no-op while it runs)."""
        if self.running:
            return self
        command = [*agent_command(), "--config", str(self.write_config()), "--log-level", self.log_level]
        self.process.launch(command, f"boot {self.boot_id}")
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (the clean shutdown path) and wait; SIGKILL after ``timeout``.

        Returns:
            The exit code, or None when the agent was not running.
        """
        code = self.process.terminate(timeout)
        self.record_queue()
        return code

    def power_cut(self) -> None:
        """The device loses power: SIGKILL, no clean-shutdown marker, nothing flushed."""
        self.process.kill()
        self.record_queue()

    def crash(self) -> None:
        """The agent dies but the board keeps running (same boot id on restart)."""
        self.process.kill()
        self.record_queue()

    def restore(self) -> Self:
        """Power returns: the board boots with a new boot id and starts the agent."""
        if self.running:
            raise RuntimeError("restore() after power_cut() or stop(), not while the agent runs")
        self.boot_id = new_boot_id()
        return self.start()

    def restart(self) -> Self:
        """Start again on the same boot (after ``crash()`` or ``stop()``)."""
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what it did ---------------------------------------------------------------------

    def record_queue(self) -> QueueMark | None:
        """Note the queue's high-water mark of the current boot (done at every stop)."""
        try:
            mark = read_agent_queue(self.queue_path)
        except Exception:  # a database the power cut left half-written must not stop the audit
            return None
        if mark is not None:
            self.boots.append(mark)
        return mark

    def produced(self) -> dict[str, range]:
        """Every seq this device allocated, per boot id (for :func:`hil_tests.audit.compare`)."""
        marks = list(self.boots)
        if self.running:
            with contextlib.suppress(Exception):
                current = read_agent_queue(self.queue_path)
                if current is not None:
                    marks.append(current)
        highest: dict[str, int] = {}
        for mark in marks:
            highest[mark.boot_id] = max(highest.get(mark.boot_id, 0), mark.next_seq)
        return {boot: range(n) for boot, n in highest.items()}

    def log_text(self) -> str:
        """The agent's log so far (every start)."""
        return self.process.log_text()

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the agent's log (for assertion messages)."""
        return self.process.log_tail(lines)

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Block until the agent's log since its last start matches the regex ``pattern``.

        Raises:
            TimeoutError: no match in time; the message shows the log tail.
            RuntimeError: the agent exited meanwhile.
        """
        return self.process.wait_for_log(pattern, timeout)

    def wipe_state(self) -> None:
        """Remove the state dir (a re-flashed SD card); only while stopped."""
        if self.running:
            raise RuntimeError("wipe_state() while the agent runs")
        shutil.rmtree(self.state_dir, ignore_errors=True)
