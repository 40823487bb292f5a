"""``tincoso dashboards build --out DIR``: Grafana provisioning files for tincoso."""

from __future__ import annotations

import argparse
from pathlib import Path

from backend.cli.common import EXIT_OK, CliError, Subparsers


def register(subparsers: Subparsers) -> None:
    """Add the ``dashboards`` command and its ``build`` action.

    Args:
        subparsers: The top-level parser's subcommand collection.
    """
    dashboards = subparsers.add_parser(
        "dashboards",
        help="generate Grafana dashboards and provisioning files",
        description="Generate tincoso's Grafana dashboards and provisioning files.",
    )
    actions = dashboards.add_subparsers(title="actions", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build",
        help="write datasources/, dashboards/ and the dashboard JSON under --out",
        description="Write DIR/datasources/tincoso.yaml (InfluxDB, InfluxQL), DIR/dashboards/tincoso.yaml "
        "(a file provider) and DIR/dashboards/json/*.json. Point Grafana's paths.provisioning at DIR.",
    )
    build.add_argument("--out", required=True, type=Path, help="provisioning directory to write")
    build.add_argument("--lang", choices=("vi", "en"), default="vi", help="dashboard language (default: vi)")
    build.add_argument(
        "--influx-url", default="http://127.0.0.1:8086", help="InfluxDB URL as Grafana reaches it"
    )
    build.add_argument("--database", default="tincoso", help="InfluxDB database (default: tincoso)")
    build.add_argument(
        "--influx-user",
        help="InfluxDB user; Grafana then reads the password from $TINCOSO_INFLUX_PASSWORD",
    )
    build.add_argument(
        "--dashboards-path",
        help="directory of the JSON as Grafana sees it (default: DIR/dashboards/json, absolute)",
    )
    build.add_argument(
        "--config",
        type=Path,
        help="backend.toml: its [definitions] (the 'sounded' threshold) go into the panel queries",
    )
    build.add_argument(
        "--registry", type=Path, help="fleet registry YAML: filters and tables show its commune names"
    )
    build.set_defaults(handler=dashboards_build)
    push = actions.add_parser(
        "push",
        help="create or update the folder, data source and dashboards in a running Grafana",
        description="Push through Grafana's HTTP API (grafana-client). Credentials: "
        "$TINCOSO_GRAFANA_TOKEN (a service-account token) or --grafana-user with $TINCOSO_GRAFANA_PASSWORD. "
        "Safe to repeat: the folder and data source are created once, then updated.",
    )
    push.add_argument("--grafana-url", required=True, help="e.g. http://127.0.0.1:3000")
    push.add_argument("--grafana-user", help="Grafana user (basic auth) instead of a token")
    push.add_argument("--lang", choices=("vi", "en"), default="vi", help="dashboard language (default: vi)")
    push.add_argument(
        "--influx-url", default="http://127.0.0.1:8086", help="InfluxDB URL as Grafana reaches it"
    )
    push.add_argument("--database", default="tincoso", help="InfluxDB database (default: tincoso)")
    push.add_argument("--influx-user", help="InfluxDB user; its password from $TINCOSO_INFLUX_PASSWORD")
    push.add_argument("--registry", type=Path, help="fleet registry YAML: commune names for filters")
    push.set_defaults(handler=dashboards_push)


def dashboards_build(args: argparse.Namespace) -> int:
    """Write the provisioning files and list them."""
    # Imported here so other commands do not load the Grafana SDK.
    from backend.config import ConfigError, load_config
    from dashboards.provisioning import ProvisioningOptions, write_provisioning
    from protocols.stored_data import SOUND_THRESHOLD_DBFS

    threshold = SOUND_THRESHOLD_DBFS
    if args.config is not None:
        try:
            threshold = load_config(args.config).sound_threshold_dbfs
        except ConfigError as exc:
            raise CliError(str(exc)) from None
    options = ProvisioningOptions(
        influx_url=args.influx_url,
        database=args.database,
        username=args.influx_user,
        lang=args.lang,
        dashboards_path=args.dashboards_path,
        sound_threshold_dbfs=threshold,
        communes=_communes(args.registry),
    )
    try:
        written = write_provisioning(args.out, options)
    except OSError as error:
        raise CliError(f"cannot write provisioning files to {args.out}: {error}") from error
    for path in written:
        print(path)
    print(f"Point Grafana's paths.provisioning (GF_PATHS_PROVISIONING) at {args.out.resolve()}")
    return EXIT_OK


def write_grafana(
    out: Path, influx_url: str, database: str, username: str | None, registry: Path | None = None
) -> list[Path]:
    """Write the provisioning files under ``out`` (``tincoso server install`` uses this too).

    Args:
        out: Grafana's provisioning directory.
        influx_url: InfluxDB as Grafana reaches it.
        database: The tincoso database.
        username: InfluxDB user (password from ``$TINCOSO_INFLUX_PASSWORD``), or None.
        registry: The fleet registry, whose commune names the filters show.

    Returns:
        Every file written.
    """
    from dashboards.provisioning import ProvisioningOptions, write_provisioning

    return write_provisioning(
        out,
        ProvisioningOptions(
            influx_url=influx_url, database=database, username=username, communes=_communes(registry)
        ),
    )


def _communes(path: Path | None) -> dict[str, str] | None:
    """Commune id -> name from the registry, or None without one."""
    if path is None:
        return None
    from backend.registry import RegistryError
    from dashboards.build import commune_names

    try:
        return commune_names(path)
    except (RegistryError, OSError) as error:
        raise CliError(f"registry {path}: {error}") from None


GRAFANA_TOKEN_ENV = "TINCOSO_GRAFANA_TOKEN"
GRAFANA_PASSWORD_ENV = "TINCOSO_GRAFANA_PASSWORD"


def dashboards_push(args: argparse.Namespace) -> int:
    """Push the dashboards to Grafana and say what was created or updated."""
    import os

    from grafana_client.api import GrafanaApi

    from dashboards.provisioning import PASSWORD_ENV, ProvisioningOptions
    from dashboards.push import PushError, push

    if args.grafana_user:
        credential: str | tuple[str, str] | None = (
            args.grafana_user,
            os.environ.get(GRAFANA_PASSWORD_ENV, ""),
        )
    else:
        credential = os.environ.get(GRAFANA_TOKEN_ENV)
    if not credential:
        raise CliError(f"give ${GRAFANA_TOKEN_ENV} (a service-account token) or --grafana-user")
    options = ProvisioningOptions(
        influx_url=args.influx_url,
        database=args.database,
        username=args.influx_user,
        lang=args.lang,
        communes=_communes(args.registry),
    )
    api = GrafanaApi.from_url(args.grafana_url, credential, timeout=30.0)
    try:
        result = push(api, options, password=os.environ.get(PASSWORD_ENV))
    except PushError as error:
        raise CliError(str(error)) from None
    print(f"folder tincoso: {result.folder}")
    print(f"data source tincoso-influxdb: {result.datasource}")
    for uid, url in result.dashboards.items():
        print(f"dashboard {uid}: {args.grafana_url.rstrip('/')}{url}")
    return EXIT_OK
