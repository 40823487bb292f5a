"""``python -m dashboards``: regenerate dashboards/generated/."""

from __future__ import annotations

from dashboards.build import main

main()
