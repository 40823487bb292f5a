"""``tincoso server influx-init``: the database, its least-privilege users, policies and rollups.

Run by the InfluxDB unit's ``ExecStartPost=`` after every start, so it is idempotent: the
admin is created on the first start (InfluxDB allows that one statement without
credentials), later starts log in as the admin; each role's user gets its password and
exactly its grant (ingest WRITE, monitor ALL, reader READ) again.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from backend.config import InfluxSettings
from backend.influx import InfluxClient, InfluxError
from backend.rollups import ensure_retention_and_rollups
from backend.server.install import load_secrets
from backend.server.render import INFLUX_USERS
from backend.server.settings import ServerConfig
from protocols.stored_data import SOUND_THRESHOLD_DBFS, check_sound_threshold

__all__ = ["GRANTS", "InfluxInitError", "influx_init"]

# The ingest reads too: its late-data task rewrites the rollups replayed readings fall in
# (SELECT ... INTO needs READ and WRITE). Only the admin manages databases and users.
GRANTS = {"ingest": "ALL", "monitor": "ALL", "reader": "READ"}


class InfluxInitError(RuntimeError):
    """InfluxDB did not come up, or refused a statement (the message says which)."""


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


async def _wait_for_ping(client: InfluxClient, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if await client.ping():
                return
        except InfluxError:
            pass
        if time.monotonic() > deadline:
            raise InfluxInitError(f"InfluxDB at {client.url} did not answer /ping within {timeout_s:.0f} s")
        await asyncio.sleep(0.2)


async def _ensure_admin(url: str, user: str, password: str) -> None:
    statement = f"CREATE USER \"{user}\" WITH PASSWORD '{_quote(password)}' WITH ALL PRIVILEGES"
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as http:
        first = await http.post("/query", data={"q": statement})
        if first.status_code == httpx.codes.OK and "error" not in first.text:
            return
        again = await http.post("/query", data={"q": "SHOW USERS"}, params={"u": user, "p": password})
    if again.status_code != httpx.codes.OK or "error" in again.text:
        raise InfluxInitError(
            f"InfluxDB at {url} has users but refuses admin {user!r}: {again.text.strip()[:200]} "
            "(the password in secrets/influx-users.json does not match the database's)"
        )


async def _run(config: ServerConfig, timeout_s: float) -> list[str]:
    passwords = load_secrets(config, create=False).influx_passwords
    url = f"http://127.0.0.1:{config.influx_port}"
    admin = InfluxSettings(
        url=url,
        database=config.database,
        username=INFLUX_USERS["admin"],
        password=passwords["admin"],
        **{k: v for k, v in config.influx.items() if k.endswith("_days")},
    )
    async with admin.client() as client:
        await _wait_for_ping(client, timeout_s)
        await _ensure_admin(url, INFLUX_USERS["admin"], passwords["admin"])
        definitions = config.sections.get("definitions", {})
        threshold = check_sound_threshold(definitions.get("sound_threshold_dbfs", SOUND_THRESHOLD_DBFS))
        await ensure_retention_and_rollups(client, admin.retention(threshold))
        done = [f"database {config.database}: retention policies and rollups up to date"]
        existing = {row[0] for s in await client.query("SHOW USERS") for row in s.get("values", [])}
        for role, privilege in GRANTS.items():
            user, password = INFLUX_USERS[role], passwords[role]
            verb = "SET PASSWORD FOR" if user in existing else "CREATE USER"
            statement = (
                f"SET PASSWORD FOR \"{user}\" = '{_quote(password)}'"
                if user in existing
                else f"CREATE USER \"{user}\" WITH PASSWORD '{_quote(password)}'"
            )
            await client.query_all(statement)
            await client.query_all(f'REVOKE ALL ON "{config.database}" FROM "{user}"')
            await client.query_all(f'GRANT {privilege} ON "{config.database}" TO "{user}"')
            done.append(f"user {user}: {privilege} on {config.database} ({verb.split()[0].lower()})")
    return done


def influx_init(config: ServerConfig, *, timeout_s: float = 120.0) -> list[str]:
    """Make the database match ``config``; returns one line per thing ensured.

    Raises:
        InfluxInitError: InfluxDB did not answer in time or refused a statement.
    """
    try:
        return asyncio.run(_run(config, timeout_s))
    except InfluxError as exc:
        raise InfluxInitError(str(exc)) from exc
