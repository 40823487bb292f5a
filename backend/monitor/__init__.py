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

Rules and their defaults: `backend.monitor.rules.FAULTS`.
"""
