"""The Võ Nhai district demo (``make demo``, ``tincoso demo``, ``python -m hil_tests.demo``).

Local Mosquitto (secure mode) and InfluxDB, the real backend, and a simulated district on
the HIL rig: every device a real agent process against simulated hardware, playing an
accelerated day with scripted faults, with alerts delivered to a local SMTP server, webhook
receiver, brandname-SMS gateway and Telegram Bot API. See ``README.md`` ("What `make demo`
shows") for a real run.

Modules: ``district`` (the fleet and its registry), ``timeline`` (the accelerated day),
``script`` (bulletins and faults), ``stack`` (start and stop everything), ``receivers``
(SMTP, webhooks, SMS, Telegram), ``watch`` and ``view`` (the terminal), ``wrapup`` (plan, summary,
dashboards, KPI report), ``runner`` (the flow), ``__main__`` (the command line).
"""

from __future__ import annotations

from hil_tests.demo.runner import Demo, DemoOptions

__all__ = ["Demo", "DemoOptions"]
