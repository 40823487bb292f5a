"""The district server: generate, install, check, back up and restore what a Debian 12 server runs.

- `settings`: ``server.toml`` (names, interfaces, directories, fleet settings);
- `render`: every config and systemd unit as text (pure);
- `install`: secrets, certificates, directories and files written idempotently;
- `influx_init`: the database, its least-privilege users, policies and rollups;
- `backup`: nightly ``influxd backup -portable`` plus registry, secrets and configs; restore;
- `doctor`: checks a running server and says what to fix;
- `notify`: sd_notify (``READY=1``, ``WATCHDOG=1``) for the backend's units.

Submodules are imported by name; this package imports nothing, so ``backend.cli.backend``
can use `notify` without loading the rest.
"""
