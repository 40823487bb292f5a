"""InfluxDB through its v1 HTTP API: line-protocol writes and InfluxQL queries.

The same two calls (``POST /write``, ``GET|POST /query``) work on InfluxDB 1.x, on 2.x
(v1 compatibility API with a DBRP mapping) and on 3 Core, so a district can run any of
them. Authentication is the v1 ``u``/``p`` pair; on 2.x and 3 put the API token in
``password`` (those servers accept the token as ``p``).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

__all__ = [
    "InfluxClient",
    "InfluxError",
    "InfluxUnavailable",
    "escape_tag",
    "line",
    "line_ns",
    "point",
    "point_ns",
    "rows",
    "series_key",
]

FieldValue = bool | int | float | str

PRECISIONS = ("ns", "u", "ms", "s")
"""Timestamp precisions of ``/write`` (``u`` is microseconds)."""


class InfluxError(Exception):
    """InfluxDB refused a request (bad query, bad line protocol, auth)."""


class InfluxUnavailable(InfluxError):
    """InfluxDB could not be reached or answered 5xx: retry later, keep the data."""


def escape_tag(value: str) -> str:
    """Escape a measurement name, tag key or tag value for line protocol.

    Line protocol cannot carry a newline or other control character there (a newline
    would start a new point of the writer's choosing), nor a trailing backslash: each
    becomes ``?``.
    """
    if not value.isprintable():
        value = "".join(c if c.isprintable() else "?" for c in value)
    if value.endswith("\\"):  # InfluxDB 1.x cannot parse a key or tag ending in a backslash
        stripped = value.rstrip("\\")
        value = stripped + "?" * (len(value) - len(stripped))
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _field(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"field value {value!r} is not finite")
        return repr(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def series_key(measurement: str, tags: Mapping[str, str | None]) -> str:
    """The escaped measurement and tag set of a point, tags sorted (InfluxDB's preferred
    order), empty or None tags left out: build it once for many points of one series."""
    tag_part = "".join(
        f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(tags.items()) if v is not None and v != ""
    )
    return escape_tag(measurement) + tag_part


_field_keys: dict[str, str] = {}


def _field_key(key: str) -> str:
    # Field names repeat in every point: escape each once (a bounded memo, as names come
    # from payloads too).
    escaped = _field_keys.get(key)
    if escaped is None:
        escaped = escape_tag(key)
        if len(_field_keys) < 4096:
            _field_keys[key] = escaped
    return escaped


def point(series: str, fields: Mapping[str, FieldValue | None], ts_ms: int) -> str:
    """One point of the series ``series`` (from `series_key`), millisecond precision.

    None fields are left out. Raises ValueError when no field is left.
    """
    field_part = ",".join(f"{_field_key(k)}={_field(v)}" for k, v in fields.items() if v is not None)
    if not field_part:
        raise ValueError(f"point {series.split(',', 1)[0]!r} has no fields")
    return f"{series} {field_part} {ts_ms}"


def point_ns(series: str, fields: Mapping[str, FieldValue | None], ts_ns: int) -> str:
    """As `point`, with a nanosecond timestamp: write it with ``precision="ns"``."""
    return point(series, fields, ts_ns)


def line(
    measurement: str,
    tags: Mapping[str, str | None],
    fields: Mapping[str, FieldValue | None],
    ts_ms: int,
) -> str:
    """One point in line protocol with millisecond precision.

    Tags are sorted (InfluxDB's preferred order) and empty or None tags and None fields are
    left out. Raises ValueError when no field is left.
    """
    return point(series_key(measurement, tags), fields, ts_ms)


def line_ns(
    measurement: str,
    tags: Mapping[str, str | None],
    fields: Mapping[str, FieldValue | None],
    ts_ns: int,
) -> str:
    """As `line`, with a nanosecond timestamp: write it with ``precision="ns"``."""
    return point(series_key(measurement, tags), fields, ts_ns)


class InfluxClient:
    """Async client for one database.

    Args:
        url: base URL, e.g. ``http://127.0.0.1:8086``.
        database: database (1.x) or DBRP-mapped database name (2.x, 3).
        username: v1 user; None for no authentication.
        password: v1 password, or the API token on 2.x/3.
        retention_policy: write into this retention policy instead of the default.
        timeout: seconds per request.
        gzip_writes: compress write bodies (``Content-Encoding: gzip``).
    """

    def __init__(
        self,
        url: str,
        database: str,
        *,
        username: str | None = None,
        password: str | None = None,
        retention_policy: str | None = None,
        timeout: float = 10.0,
        gzip_writes: bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy
        self.gzip_writes = gzip_writes
        self._auth: dict[str, str] = {}
        if username is not None:
            self._auth = {"u": username, "p": password or ""}
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout)

    async def __aenter__(self) -> InfluxClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    async def ping(self) -> bool:
        """True if the server answers ``/ping``."""
        try:
            response = await self._http.get("/ping")
        except httpx.HTTPError:
            return False
        return response.status_code == 204

    async def write(
        self, lines: Iterable[str], *, retention_policy: str | None = None, precision: str = "ms"
    ) -> int:
        """Write points (line protocol, ``precision`` one of `PRECISIONS`, every point of the
        request in it); return how many were sent.

        Raises:
            InfluxUnavailable: connection failed or 5xx: nothing may be assumed written.
            InfluxError: the server refused the points (4xx), with its reason.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        points = [p for p in lines if p]
        if not points:
            return 0
        body = "\n".join(points).encode("utf-8")
        params = {"db": self.database, "precision": precision, **self._auth}
        rp = retention_policy or self.retention_policy
        if rp:
            params["rp"] = rp
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip_writes:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        try:
            response = await self._http.post("/write", params=params, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise InfluxUnavailable(f"InfluxDB at {self.url} unreachable: {exc!r}") from exc
        if response.status_code >= 500:
            detail = response.text[:200]
            raise InfluxUnavailable(f"InfluxDB write failed: HTTP {response.status_code} {detail}")
        if response.status_code != 204:
            detail = response.text[:300]
            raise InfluxError(f"InfluxDB refused the write: HTTP {response.status_code} {detail}")
        return len(points)

    async def query(self, q: str, *, epoch: str = "ms") -> list[dict[str, Any]]:
        """Run InfluxQL; return the series of the first statement's result.

        Each series is ``{"name", "tags", "columns", "values"}`` as InfluxDB returns it.

        Raises:
            InfluxUnavailable: connection failed or 5xx.
            InfluxError: the statement failed, with InfluxDB's message.
        """
        results = await self.query_all(q, epoch=epoch)
        return results[0] if results else []

    async def query_all(self, q: str, *, epoch: str = "ms") -> list[list[dict[str, Any]]]:
        """Run one or more InfluxQL statements; return each statement's series."""
        params = {"db": self.database, "q": q, "epoch": epoch}
        try:
            # InfluxDB 1.x reads u/p from the URL (or basic auth), never from a form body.
            response = await self._http.post("/query", data=params, params=self._auth)
        except httpx.HTTPError as exc:
            raise InfluxUnavailable(f"InfluxDB at {self.url} unreachable: {exc!r}") from exc
        if response.status_code >= 500:
            raise InfluxUnavailable(f"InfluxDB query failed: HTTP {response.status_code}")
        try:
            payload = response.json()
        except ValueError as exc:
            raise InfluxError(f"InfluxDB answered HTTP {response.status_code} with no JSON") from exc
        if "error" in payload:
            raise InfluxError(f"InfluxDB: {payload['error']}")
        out: list[list[dict[str, Any]]] = []
        for result in payload.get("results", []):
            if "error" in result:
                raise InfluxError(f"InfluxQL error: {result['error']} (query: {q[:200]})")
            out.append(result.get("series", []))
        return out

    async def create_database(self) -> None:
        """Create the database if it does not exist (idempotent on 1.x)."""
        await self.query_all(f'CREATE DATABASE "{self.database}"')


def rows(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten query series into dicts of column -> value (tags included)."""
    out = []
    for s in series:
        tags = s.get("tags") or {}
        for values in s.get("values", []):
            row = dict(zip(s["columns"], values, strict=True))
            row.update(tags)
            out.append(row)
    return out
