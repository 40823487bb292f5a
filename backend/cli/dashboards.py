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
    build.set_defaults(handler=dashboards_build)


def dashboards_build(args: argparse.Namespace) -> int:
    """Write the provisioning files and list them."""
    # Imported here so other commands do not load the Grafana SDK.
    from dashboards.provisioning import ProvisioningOptions, write_provisioning

    options = ProvisioningOptions(
        influx_url=args.influx_url,
        database=args.database,
        username=args.influx_user,
        lang=args.lang,
        dashboards_path=args.dashboards_path,
    )
    try:
        written = write_provisioning(args.out, options)
    except OSError as error:
        raise CliError(f"cannot write provisioning files to {args.out}: {error}") from error
    for path in written:
        print(path)
    print(f"Point Grafana's paths.provisioning (GF_PATHS_PROVISIONING) at {args.out.resolve()}")
    return EXIT_OK
