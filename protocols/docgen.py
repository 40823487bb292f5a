"""Render the schema tables and examples of protocols/README.md from the code.

``python -m protocols.docgen`` rewrites the generated part of the README;
tests/test_protocol_docs.py fails when the README and the code disagree.
CPython only (documentation tooling, not part of the portable core).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from protocols import payloads
from protocols.examples import EXAMPLES
from protocols.topics import topic_for

BEGIN = "<!-- BEGIN GENERATED: python -m protocols.docgen -->"
END = "<!-- END GENERATED -->"
ORDER = ("birth", "death", "heartbeat", "audio", "display", "event", "command", "result", "batch", "receipt")
README = Path(__file__).with_name("README.md")


def _rule(spec: dict[str, Any]) -> str:
    rule = []
    if "choices" in spec:
        rule.append("one of " + ", ".join(f"`{c}`" for c in spec["choices"]))
    if "lo" in spec:
        rule.append(f"≥ {spec['lo']}")
    if "hi" in spec:
        rule.append(f"≤ {spec['hi']}")
    if "max_len" in spec:
        rule.append(f"length ≤ {spec['max_len']}")
    return "; ".join(rule)


def _table(fields: tuple[dict[str, Any], ...]) -> str:
    rows = ["| field | type | required | rule |", "|---|---|---|---|"]
    for f in fields:
        typ = f["type"] + (" or null" if f["nullable"] else "")
        rows.append(f"| `{f['name']}` | {typ} | {'yes' if f['required'] else 'no'} | {_rule(f)} |")
    return "\n".join(rows)


def render() -> str:
    """The generated part of protocols/README.md."""
    out = [
        "### Envelope (every kind but `death`, `command`, `batch` and `receipt`)",
        "",
        _table(payloads._ENVELOPE),
    ]
    for kind in ORDER:
        out += ["", f"### `{kind}`", "", _table(payloads.SCHEMAS[kind][1])]
    out += ["", "### Command arguments", "", "| command | argument | type | required | rule |"]
    out.append("|---|---|---|---|---|")
    for cmd, fields in payloads.COMMAND_ARGS.items():
        if not fields:
            out.append(f"| `{cmd}` | (none) | | | |")
        for f in fields:
            out.append(
                f"| `{cmd}` | `{f['name']}` | {f['type']} | {'yes' if f['required'] else 'no'} | {_rule(f)} |"
            )
    out += ["", "## Examples", ""]
    for kind in ORDER:
        msg = dict(EXAMPLES[kind])
        if kind == "batch":
            msg["items"] = [EXAMPLES["heartbeat"]]
        out += [f"`{kind}` on `{topic_for(msg)}`:", "", "```json"]
        out += [json.dumps(msg, ensure_ascii=False, indent=2), "```", ""]
    return "\n".join(out).rstrip() + "\n"


def rewrite(readme: Path = README) -> bool:
    """Replace the generated part of ``readme``; return True if it changed."""
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + BEGIN + "\n" + render() + END + tail
    readme.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    sys.exit(1 if rewrite() and "--check" in sys.argv else 0)
