"""``python -m backend.cli``: the ``tincoso`` command."""

from __future__ import annotations

import sys

from backend.cli import main

sys.exit(main())
