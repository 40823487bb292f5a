"""The monitor role: fleet state, sequence gaps, fault rules and alerts (one per district).

Entry point: `backend.monitor.service.run_monitor`. Settings (``backend.toml``)::

    [monitor]
    client_id = "tincoso-monitor-vonhai"   # its own persistent MQTT session
    state_dir = "var/state"                # open_alerts.json, maintenance.json
    missed_heartbeats = 3

    [monitor.rules.amp_idle]               # or [rules.amp_idle]
    for_s = 30
    threshold = 5.0                        # watts
    [monitor.rules.overheating.district_led]
    threshold = 65

    [alerts]
    smtp_host = "smtp.example.invalid"
    smtp_from = "tincoso@vonhai.example.invalid"
    telegram_token = "..."
    remind_s = 3600

Rules and their defaults: `backend.monitor.rules.FAULTS`. The shipped defaults damp
flapping links (``[rules.offline] grace_heartbeats = 5``, one ``link_flapping`` notice for
repeated short drops), hold device state while the monitor has lost the broker
(`backend.monitor.infrastructure`, ``[monitor] hold_on_broker_loss``) or while its own loop
was stalled for more than a second (the tick after the stall judges no silence; counted as
``stalls`` in ``backend_stats``), and name each
offline episode's likely cause (`backend.monitor.causes`, `backend.monitor.outages`), and
tell a commune (or district) going dark together as one area notice (`backend.monitor.areas`,
``[monitor] area_grouping``, ``area_window_heartbeats``, ``area_fraction``, ``area_min_devices``).

Live readings only: the monitor judges faults on what arrives live. Readings a device
replays after an outage (``batch`` items) prove it was alive and fill sequence gaps, but
their heartbeat, audio and display readings never become its latest readings, so they do
not judge a bulletin hours after it ended; for that time the monitor's answer is the
``offline`` alert. The KPI report and every
dashboard panel (raw and each rollup level, recomputed by the ingest's late-data task)
do use the replayed readings, so after the replay they agree on what the bulletins did
(``tests/test_one_truth_agents.py``).
"""
