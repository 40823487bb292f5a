"""Build the agent's wheel (``tincoso-agent``) from this tree; optionally try it in a fresh venv.

    python packaging/build_agent_wheel.py dist/            # what `make dist` runs
    python packaging/build_agent_wheel.py dist/ --try DIR  # + install into DIR/venv, report sizes

The wheel holds ``agent/`` and ``protocols/`` only, with the agent's three dependencies;
the server stack (InfluxDB client, Grafana SDK, matplotlib, weasyprint) stays out.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVER_ONLY = (
    "weasyprint", "matplotlib", "grafana-foundation-sdk", "jinja2", "httpx", "rich", "cryptography", "psutil",
)  # fmt: skip
# What the running agent imports (cli -> runtime -> mqtt, probes): measured after import.
_RSS_SCRIPT = (
    "import resource, agent.cli, agent.runtime, agent.mqtt, agent.probes.audio, agent.probes.display, "
    "agent.probes.power_meter, agent.probes.modem, agent.probes.system; "
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
)


def version() -> str:
    text = (REPO / "agent" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'__version__ = "([^"]+)"', text)
    if match is None:
        raise SystemExit("agent/__init__.py has no __version__")
    return match.group(1)


def build(out: Path) -> Path:
    """Stage agent/ + protocols/ with the agent pyproject and build the wheel into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tincoso-agent-dist-") as tmp:
        stage = Path(tmp)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for package in ("agent", "protocols"):
            shutil.copytree(REPO / package, stage / package, ignore=ignore)
        template = (REPO / "packaging" / "agent-pyproject.toml").read_text(encoding="utf-8")
        (stage / "pyproject.toml").write_text(template.replace("@VERSION@", version()), encoding="utf-8")
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(stage)], check=True
        )
    wheel = out / f"tincoso_agent-{version()}-py3-none-any.whl"
    if not wheel.exists():
        raise SystemExit(f"expected {wheel} after the build")
    return wheel


def try_wheel(wheel: Path, where: Path) -> dict[str, object]:
    """Install ``wheel`` into a fresh venv under ``where``; return what it installed and costs."""
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True)
    listed = json.loads(
        subprocess.run(
            [str(python), "-m", "pip", "list", "--format", "json"], check=True, capture_output=True, text=True
        ).stdout
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    tooling = {"pip", "setuptools"}
    size = sum(
        f.stat().st_size
        for f in site.rglob("*")
        if f.is_file() and not any(part.split("-")[0] in tooling for part in f.relative_to(site).parts[:1])
    )
    rss_kb = int(
        subprocess.run([str(python), "-c", _RSS_SCRIPT], check=True, capture_output=True, text=True).stdout
    )
    return {
        "venv": str(venv),
        "packages": sorted(p["name"].lower() for p in listed if p["name"].lower() not in tooling),
        "installed_mb": round(size / 1e6, 2),
        "import_rss_mb": round(rss_kb / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Build the tincoso-agent wheel.")
    parser.add_argument("out", type=Path, help="directory for the wheel (e.g. dist/)")
    parser.add_argument(
        "--try", dest="try_dir", type=Path, metavar="DIR", help="install into DIR/venv and report"
    )
    args = parser.parse_args()
    wheel = build(args.out)
    print(f"built {wheel.relative_to(REPO) if wheel.is_relative_to(REPO) else wheel}")
    if args.try_dir is not None:
        report = try_wheel(wheel, args.try_dir)
        print(f"installed: {', '.join(report['packages'])}")  # type: ignore[arg-type]
        server = [p for p in SERVER_ONLY if p in report["packages"]]  # type: ignore[operator]
        print(f"server packages installed: {', '.join(server) or 'none'}")
        print(f"installed size (site-packages without pip/setuptools): {report['installed_mb']} MB")
        print(f"RSS after importing the agent: {report['import_rss_mb']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
