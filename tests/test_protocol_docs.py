"""protocols/README.md says what the code does."""

from __future__ import annotations

import json
import re

import pytest

from protocols import docgen, payloads
from protocols.errors import InvalidPayload


def test_readme_schema_tables_and_examples_match_the_code() -> None:
    text = docgen.README.read_text(encoding="utf-8")
    generated = text.split(docgen.BEGIN, 1)[1].split(docgen.END, 1)[0]
    assert generated.strip() == docgen.render().strip(), "run `python -m protocols.docgen`"


def test_every_json_example_in_the_readme_decodes() -> None:
    blocks = re.findall(r"```json\n(.*?)```", docgen.README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == len(docgen.ORDER)
    for block in blocks:
        payloads.decode(block.encode())


@pytest.mark.parametrize(
    "line",
    [
        line
        for line in docgen.README.read_text(encoding="utf-8")
        .split("```text\n", 1)[1]
        .split("```", 1)[0]
        .splitlines()
        if line.strip()
    ],
)
def test_documented_error_messages_are_real(line: str) -> None:
    from protocols.examples import EXAMPLES

    cases = {
        "audio.rms_dbfs must be a number, got str": ("audio", {"rms_dbfs": "x"}),
        "audio.seq is missing": ("audio", {"seq": None}),
        "heartbeat.reboot_reason must be one of": ("heartbeat", {"reboot_reason": "oops"}),
        "batch.items[1]: audio.peak_dbfs must be <= 0, got 3.0": ("batch", {}),
        "payload is not valid JSON": ("raw", {}),
    }
    key = next(k for k in cases if line.startswith(k))
    kind, change = cases[key]
    if kind == "raw":
        data = b'{"v": 1, "kind"'
    else:
        msg = json.loads(json.dumps(EXAMPLES[kind]))
        for field, value in change.items():
            if value is None:
                del msg[field]
            else:
                msg[field] = value
        if kind == "batch":
            msg["items"][1]["peak_dbfs"] = 3.0
        data = json.dumps(msg).encode()
    with pytest.raises(InvalidPayload) as info:
        payloads.decode(data)
    assert str(info.value) == line or line.startswith(str(info.value)[: len(key)])
    assert str(info.value).startswith(key)
