"""``tincoso-agent``: run the agent, or check a config and probe each device once.

tincoso-agent --config /etc/tincoso/agent.toml
tincoso-agent check-config --config /etc/tincoso/agent.toml
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

from agent.config import AgentConfig, ConfigError, load, mqtt_password

log = logging.getLogger("agent")

EXIT_OK = 0
EXIT_PROBE_FAULT = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tincoso-agent", description="tincoso edge agent")
    parser.add_argument("command", nargs="?", default="run", choices=("run", "check-config"))
    parser.add_argument("--config", "-c", default="/etc/tincoso/agent.toml", help="agent TOML config")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tincoso-agent`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"tincoso-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        return asyncio.run(check_config(config))
    return asyncio.run(run(config))


async def run(config: AgentConfig) -> int:
    """Run the agent until SIGTERM or SIGINT."""
    from agent.runtime import Agent, create_probes

    try:
        probes = create_probes(config)
    except ValueError as exc:
        print(f"tincoso-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    agent = Agent(config, probes)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info(
        "tincoso-agent %s starting (boot %s, next seq %d)",
        config.device_id,
        agent.boot_id,
        agent.queue.next_seq,
    )
    await agent.run(stop)
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


async def check_config(config: AgentConfig) -> int:
    """Print the config summary and what each probe reads once; 1 if any probe faults."""
    from agent.runtime import create_probes

    print(f"config {config.source}: OK (device {config.device_id}, {config.device_kind})")
    print(f"mqtt {config.mqtt_host}:{config.mqtt_port} tls={'yes' if config.mqtt_tls else 'no'}")
    try:
        mqtt_password(config)
    except ConfigError as exc:
        print(f"mqtt: INVALID: {exc}")
        return EXIT_CONFIG
    try:
        probes = create_probes(config)
    except ValueError as exc:
        print(f"probes: INVALID: {exc}")
        return EXIT_CONFIG
    if not probes:
        print("probes: none configured")
    faults = 0
    for name, probe in probes.items():
        try:
            await probe.start()
            values = await asyncio.wait_for(probe.read(), timeout=config.probe_timeout_s)
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
