"""Remote vendor acceptance test: drive a deployed device over MQTT and judge it against a profile.

``profile`` (limits, TOML), ``checks`` (pure verdicts), ``runner`` (the MQTT session and the
order of the checks), ``report`` (JSON, SHA-256, HTML), ``parse`` (device payloads and saved
reports), ``text`` (Vietnamese and English wording). ``tincoso acceptance`` is in
``backend/cli/acceptance.py``.
"""
