# The portable protocol code under real MicroPython: every payload kind encodes and
# decodes, invalid input raises InvalidPayload, topics round-trip.
import json

from mptest import raises, run, test

from protocols import payloads, topics
from protocols.errors import InvalidPayload, InvalidTopic
from protocols.examples import EXAMPLES


def _roundtrip(kind):
    msg = EXAMPLES[kind]
    data = payloads.encode(msg)
    back = payloads.decode(data)
    assert back == msg, "%s changed in a round trip: %r" % (kind, back)
    assert topics.parse_topic(topics.topic_for(msg))[0] == msg["device"]


for _kind in payloads.KINDS:

    def _t(kind=_kind):
        _roundtrip(kind)

    test(_t, "roundtrip_" + _kind)


@test
def wrong_type_names_field():
    msg = dict(EXAMPLES["audio"])
    msg["rms_dbfs"] = "loud"
    exc = raises(InvalidPayload, payloads.encode, msg)
    assert "audio.rms_dbfs" in str(exc), str(exc)


@test
def bool_is_not_an_int():
    msg = dict(EXAMPLES["heartbeat"])
    msg["queue_depth"] = True
    exc = raises(InvalidPayload, payloads.validate, msg)
    assert "heartbeat.queue_depth" in str(exc), str(exc)


@test
def truncated_and_garbage():
    data = payloads.encode(EXAMPLES["display"])
    raises(InvalidPayload, payloads.decode, data[: len(data) // 2])
    raises(InvalidPayload, payloads.decode, b"\xff\xfe\x00")
    raises(InvalidPayload, payloads.decode, b"")
    raises(InvalidPayload, payloads.decode, b"[1,2,3]")


@test
def oversized():
    msg = dict(EXAMPLES["event"])
    msg["padding"] = "x" * (payloads.MAX_MESSAGE_BYTES + 10)
    exc = raises(InvalidPayload, payloads.decode, json.dumps(msg).encode())
    assert "limit" in str(exc), str(exc)


@test
def unknown_command_rejected():
    msg = dict(EXAMPLES["command"])
    msg["cmd"] = "self_destruct"
    raises(InvalidPayload, payloads.validate, msg)
    assert payloads.command_id_of(json.dumps(msg)) == msg["id"]


@test
def bad_topics():
    raises(InvalidTopic, topics.parse_topic, "tincoso/v1/Bad Id/state")
    raises(InvalidTopic, topics.parse_topic, "tincoso/v1/dev/telemetry/weather")
    raises(InvalidTopic, topics.parse_topic, "other/dev/state")


@test
def stored_data_means_the_same_under_micropython():
    from protocols import stored_data

    assert stored_data.sounded(True, False, -49.0)
    assert not stored_data.sounded(True, False, -50.0)  # at the threshold is silence
    assert not stored_data.sounded(True, True, -10.0)
    assert stored_data.silent_while_playing(True, False, -48.0, -45.0)
    assert stored_data.sounded_where(-45.0).endswith('"rms_dbfs" > -45')
    assert stored_data.device_tags("d", "c", "", "eboard")["hamlet"] is None
    raises(ValueError, stored_data.check_sound_threshold, "loud")
    assert stored_data.stored_ns(1764126000000, 1042) == 1764126000000001042


run()
