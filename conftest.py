"""Fixtures shared by tests/ and hil_tests/: one Mosquitto and one InfluxDB per test session
(per xdist worker), started by the same code as `tincoso services`."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.services_fixtures"]


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """Undo the logging set-up a CLI run in-process does (``basicConfig(force=True)``).

    Otherwise its handler keeps writing to the stream pytest captured for that one test,
    and every later log line in the worker ends in "I/O operation on closed file".
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
