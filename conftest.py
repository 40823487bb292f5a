"""Fixtures shared by tests/ and hil_tests/: one Mosquitto and one InfluxDB per test session
(per xdist worker), started by the same code as `tincoso services`."""

pytest_plugins = ["tests.services_fixtures"]
