"""``tincoso-agent``: run the agent, check a config, install, calibrate the audio capture.

tincoso-agent --config /etc/tincoso/agent.toml            (run; also ``run``)
tincoso-agent check-config --config /etc/tincoso/agent.toml [--connect]
tincoso-agent install --root / --config-from speaker_cluster
tincoso-agent calibrate-audio --reference-dbfs -18
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from agent import __version__
from agent.config import AgentConfig, ConfigError, load, mqtt_password

log = logging.getLogger("agent")

EXIT_OK = 0
EXIT_PROBE_FAULT = 1
EXIT_CONFIG = 2
EXIT_CONNECT = 3
DEFAULT_CONFIG = "/etc/tincoso/agent.toml"


def _common(defaults: bool) -> argparse.ArgumentParser:
    """--config and --log-level, accepted before or after the command."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        default=DEFAULT_CONFIG if defaults else argparse.SUPPRESS,
        help=f"the agent's TOML config (default {DEFAULT_CONFIG}; examples in agent/examples/)",
    )
    parser.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default="INFO" if defaults else argparse.SUPPRESS,
        help="least severe log messages written to stderr (default INFO)",
    )
    return parser


def _parser() -> argparse.ArgumentParser:
    from agent import calibrate, install

    parser = argparse.ArgumentParser(
        prog="tincoso-agent",
        description="tincoso edge agent: measures a speaker cluster or board and reports over MQTT.",
        parents=[_common(defaults=True)],
        epilog="Without a command the agent runs. Exit codes: 0 OK, 1 a probe faulted, "
        "2 invalid config or a missing file, 3 the broker connection failed (--connect).",
    )
    parser.add_argument("--version", action="version", version=f"tincoso-agent {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands", help="what to do (default: run)"
    )
    common = [_common(defaults=False)]
    sub.add_parser(
        "run",
        parents=common,
        help="run the agent until SIGTERM (the default)",
        description="Run the agent: probes, reporting, durable queue, MQTT, commands. "
        "Tells systemd READY=1 and feeds its watchdog when started as Type=notify.",
    )
    check = sub.add_parser(
        "check-config",
        parents=common,
        help="validate the config and the files it names, read each probe once; changes nothing",
        description="Validate the config, check every file and device it names (CA, password file, "
        "serial ports, sound card), then read each probe once. Writes nothing: the next start "
        "reports the same reboot reason.",
    )
    check.add_argument(
        "--connect",
        action="store_true",
        help="also log in to the broker as this device and name the step that fails: "
        "DNS, TCP, TLS, login, ACL (a running agent reconnects once)",
    )
    check.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="longest wait for each network step of --connect (default 10)",
    )
    check.add_argument(
        "--no-probes", action="store_true", help="skip reading the probes (checks files and the config only)"
    )
    install.register(sub, [])
    calibrate.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tincoso-agent`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    handler = getattr(args, "handler", None)
    if handler is not None:
        return int(handler(args))
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"tincoso-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        return asyncio.run(
            check_config(config, connect=args.connect, timeout_s=args.timeout, probes=not args.no_probes)
        )
    return asyncio.run(run(config))


async def run(config: AgentConfig) -> int:
    """Run the agent until SIGTERM or SIGINT."""
    from agent.runtime import Agent, create_probes
    from agent.sdnotify import ServiceNotifier

    try:
        probes = create_probes(config)
    except ValueError as exc:
        print(f"tincoso-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    agent = Agent(config, probes)
    notifier = ServiceNotifier(lambda: agent.polls)
    stop = asyncio.Event()

    def on_signal() -> None:
        notifier.stopping()
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    log.info(
        "tincoso-agent %s starting (boot %s, next seq %d)",
        config.device_id,
        agent.boot_id,
        agent.queue.next_seq,
    )
    status = f"reporting as {config.device_id} to {config.mqtt_host}:{config.mqtt_port}"
    watchdog = asyncio.create_task(notifier.run(status), name="sd-notify")
    try:
        await agent.run(stop)
    finally:
        watchdog.cancel()
    log.info("stopped cleanly")
    stuck = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    if stuck:
        # The queue is closed and the marker written: nothing is left to lose. asyncio.run
        # would wait without limit for these to finish cancelling (a library that swallows
        # cancellation), so leave now rather than hang under systemd's stop timeout.
        log.warning("leaving %d task(s) that did not stop: %s", len(stuck), [t.get_name() for t in stuck])
        logging.shutdown()
        os._exit(EXIT_OK)
    return EXIT_OK


async def check_config(
    config: AgentConfig, *, connect: bool = False, timeout_s: float = 10.0, probes: bool = True
) -> int:
    """Print the config summary, problems with the files it names, what each probe reads
    once and, with ``connect``, each step of logging in to the broker.

    Returns:
        ``EXIT_CONFIG`` for an invalid config or file, ``EXIT_CONNECT`` when the broker
        login fails, ``EXIT_PROBE_FAULT`` when a probe faults, else ``EXIT_OK``.
    """
    from agent.checks import check_references
    from agent.runtime import create_probes

    print(f"config {config.source}: OK (device {config.device_id}, {config.device_kind})")
    print(f"mqtt {config.mqtt_host}:{config.mqtt_port} tls={'yes' if config.mqtt_tls else 'no'}")
    found = check_references(config)
    try:
        mqtt_password(config)
    except ConfigError as exc:
        if not any(line.startswith("[mqtt] password_file") for line in found.problems):
            found.problem(str(exc))
    for line in found.warnings:
        print(f"warning: {line}")
    for line in dict.fromkeys(found.problems):
        print(f"INVALID: {line}")
    try:
        made = create_probes(config)
    except ValueError as exc:
        print(f"probes: INVALID: {exc}")
        return EXIT_CONFIG
    if found.problems:
        return EXIT_CONFIG
    if connect:
        code = await asyncio.to_thread(_connect, config, timeout_s)
        if code != EXIT_OK:
            return code
    if not probes:
        return EXIT_OK
    return await _read_probes_once(config, made)


def _connect(config: AgentConfig, timeout_s: float) -> int:
    from agent.connect_check import ConnectFailed, check_connection

    try:
        for line in check_connection(config, timeout_s):
            print(f"connect {line}")
    except ConnectFailed as exc:
        print(f"connect FAILED {exc}")
        return EXIT_CONNECT
    return EXIT_OK


async def _read_probes_once(config: AgentConfig, probes: dict[str, Any]) -> int:
    if not probes:
        print("probes: none configured")
    faults = 0
    for name, probe in probes.items():
        try:
            await probe.start_check()
            async with asyncio.timeout(config.probe_timeout_s):
                values = await probe.read()
        except Exception as exc:  # every failure is reported the same way: FAULT and why
            faults += 1
            reason = str(exc) or type(exc).__name__
            print(f"probe {name}: FAULT: {reason}")
        else:
            print(f"probe {name}: OK {json.dumps(values, sort_keys=True, default=str)}")
        finally:
            with contextlib.suppress(Exception):
                await probe.close()
    return EXIT_PROBE_FAULT if faults else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
