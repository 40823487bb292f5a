"""Shared fixtures: a real Mosquitto and a real InfluxDB per test session (per xdist worker).

- ``mosquitto``, ``influxdb``: session-wide services on free ports; never stop or kill them
  in a test, use ``fresh_mosquitto`` / ``fresh_influx`` for that.
- ``services``: both, as ``services.mosquitto`` and ``services.influxdb``.
- ``fresh_mosquitto(**kwargs)``, ``fresh_influx(**kwargs)``: factories for private services
  a test may kill or restart; stopped when the test ends.
- ``influx_db``: a new database on the session InfluxDB, as ``(base_url, db_name)``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest

from backend.localservices import LocalInflux, LocalMosquitto, LocalService

ServiceT = TypeVar("ServiceT", bound=LocalService)


class ServicePair(NamedTuple):
    """The session broker and database."""

    mosquitto: LocalMosquitto
    influxdb: LocalInflux


class InfluxDatabase(NamedTuple):
    """A database created for one test on the session InfluxDB."""

    base_url: str
    name: str


@pytest.fixture(scope="session")
def services_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of the session services (xdist gives each worker its own)."""
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def mosquitto(services_root: Path) -> Iterator[LocalMosquitto]:
    """A Mosquitto broker for the whole session, on a free port."""
    broker = LocalMosquitto(services_root)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def influxdb(services_root: Path) -> Iterator[LocalInflux]:
    """An InfluxDB for the whole session, on a free port, without auth."""
    database = LocalInflux(services_root)
    database.start()
    yield database
    database.stop()


@pytest.fixture(scope="session")
def services(mosquitto: LocalMosquitto, influxdb: LocalInflux) -> ServicePair:
    """The session broker and database together."""
    return ServicePair(mosquitto, influxdb)


def _private_services(
    make: Callable[..., ServiceT], root: Path, name: str
) -> Iterator[Callable[..., ServiceT]]:
    """Yield a factory that starts private services under ``root``; stop them all after."""
    started: list[ServiceT] = []

    def start(**kwargs: Any) -> ServiceT:
        service = make(root / f"fresh-{name}-{len(started)}", **kwargs)
        started.append(service)
        service.start()
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def fresh_mosquitto(tmp_path: Path) -> Iterator[Callable[..., LocalMosquitto]]:
    """Factory for private brokers (keyword arguments go to `LocalMosquitto`)."""
    yield from _private_services(LocalMosquitto, tmp_path, "mosquitto")


@pytest.fixture
def fresh_influx(tmp_path: Path) -> Iterator[Callable[..., LocalInflux]]:
    """Factory for private databases (keyword arguments go to `LocalInflux`)."""
    yield from _private_services(LocalInflux, tmp_path, "influx")


@pytest.fixture
def influx_db(influxdb: LocalInflux, request: pytest.FixtureRequest) -> Iterator[InfluxDatabase]:
    """A database of its own for this test on the session InfluxDB, dropped afterwards."""
    stem = re.sub(r"\W+", "_", request.node.name, flags=re.ASCII)[:40]
    name = f"test_{stem}_{secrets.token_hex(4)}"
    influxdb.create_database(name)
    yield InfluxDatabase(influxdb.url, name)
    influxdb.query(f'DROP DATABASE "{name}"')
