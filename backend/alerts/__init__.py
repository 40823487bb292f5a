"""Alerts: open/clear notices for technicians, rendered in Vietnamese, delivered with retries."""
