"""The agent's portable core: runs unchanged on CPython and MicroPython 1.27.

Reporting policy, dead-air state machine, queue logic and payload building. No I/O,
no dataclasses, no typing at run time.
"""
