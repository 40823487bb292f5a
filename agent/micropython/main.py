"""tincoso agent entry point on MicroPython: ``main.py`` on an ESP32, or the unix port.

On the board: copy ``protocols/``, ``agent/core/`` and ``agent/micropython/`` (as .mpy, see
``make dist``) to ``/lib`` and this file to ``/main.py``, with ``config.json`` beside it.
On the unix port (tests): ``micropython agent/micropython/main.py config.json``.
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

import json
import sys


def load_board(cfg: "dict[str, Any]") -> "Any":
    """The board layer for where this runs."""
    if sys.platform == "linux":
        from agent.micropython.board_unix import UnixBoard

        return UnixBoard(cfg)
    from agent.micropython.board_esp32 import Esp32Board

    return Esp32Board(cfg)


def main(path: str = "config.json") -> None:
    """Load the config and run the agent until a reset."""
    from agent.micropython.mcu_agent import McuAgent

    with open(path) as f:
        cfg = json.load(f)
    McuAgent(cfg, load_board(cfg)).run()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "config.json")
