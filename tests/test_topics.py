"""MQTT topic layout v1: one subtree per device, and nothing outside it parses."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import topics
from protocols.errors import InvalidTopic
from protocols.examples import EXAMPLES

device_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=64)


@given(device_ids, st.sampled_from(topics.TELEMETRY_KINDS))
def test_telemetry_topic_round_trips(device: str, kind: str) -> None:
    assert topics.parse_topic(topics.telemetry_topic(device, kind)) == (device, "telemetry", kind)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_every_message_kind_has_a_topic_in_its_device_subtree(kind: str) -> None:
    topic = topics.topic_for(EXAMPLES[kind])
    assert topic.startswith(f"tincoso/v1/{EXAMPLES[kind]['device']}/")


@given(st.text(max_size=80))
def test_arbitrary_topics_raise_only_invalid_topic(topic: str) -> None:
    with contextlib.suppress(InvalidTopic):
        topics.parse_topic(topic)


@pytest.mark.parametrize("bad", ["+", "#", "a/b", "UPPER", "", "x" * 65, "khánh"])
def test_device_ids_that_would_escape_an_acl_are_refused(bad: str) -> None:
    with pytest.raises(InvalidTopic):
        topics.check_device_id(bad)


def test_subscriptions_cover_every_device_channel() -> None:
    filters = topics.subscription_filters()
    assert "tincoso/v1/+/telemetry/+" in filters
    assert "tincoso/v1/+/cmd" not in filters
