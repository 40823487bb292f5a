# The reporting loop's decisions (agent/core/reporter.py) under real MicroPython: the same
# Reporter the CPython agent runs, with the flash ring as its store.
import json

from mptest import raises, run, test

from agent.core.outbox import RingOutbox
from agent.core.policy import ReportingPolicy
from agent.core.reporter import Reporter
from agent.core.ring import RingBuffer
from protocols import payloads
from protocols.errors import InvalidPayload

DEVICE = "vn-trangxa-loa-04"
BOOT = "c" * 16


def reporter(store=None, receipts=True, threshold=50):
    policy = ReportingPolicy(DEVICE, 30, 300, now_s=0.0)
    return Reporter(DEVICE, policy, store, receipts=receipts, batch_threshold=threshold, batch_max_items=20)


def message(seq, kind="heartbeat"):
    env = payloads.envelope(DEVICE, 1764126000000 + seq, True, seq, BOOT, seq)
    fields = {"uptime_s": 1.0, "reboot_reason": "clean", "temp_c": None, "disk_free_mb": None}
    fields.update({"disk_ro": False, "net_type": "wifi", "signal_dbm": None})
    fields.update({"queue_depth": 0, "queue_dropped": 0, "probe_faults": 0})
    return payloads.encode(payloads.build(kind, env, fields))


@test
def a_failing_probe_gives_one_start_and_one_end_and_counts_in_the_heartbeat():
    rep = reporter()
    start = rep.probe_failed("power_meter", "no answer " * 100)
    assert start["code"] == "probe.power_meter" and len(start["detail"]) == 512, start
    assert rep.probe_failed("power_meter", "still nothing") is None
    due = rep.due({"heartbeat": {"uptime_s": 5.0}}, 0.0, True, 3, 1)
    assert due[0][0] == "heartbeat", due
    beat = due[0][1]
    assert (beat["probe_faults"], beat["queue_depth"], beat["queue_dropped"]) == (1, 3, 1), beat
    assert rep.probe_read("power_meter") == {"event": "fault_end", "code": "probe.power_meter"}
    assert rep.probe_read("power_meter") is None and rep.probe_faults == 0


@test
def birth_and_will_carry_the_session_counter():
    rep = reporter()
    birth = rep.birth(7, "speaker_cluster", "0.2.0-mpy", "esp32")
    assert birth["bdseq"] == 7 and birth["heartbeat_s"] == 30, birth
    will = json.loads(rep.will(1764126000000, True, 7))
    assert (will["kind"], will["bdseq"], will["reason"]) == ("death", 7, "lwt"), will


@test
def a_short_backlog_goes_one_by_one_a_long_one_in_batches_torn_records_never():
    rep = reporter(threshold=3)
    rows = [(i, None, None, message(i)) for i in range(5)]
    single = rep.publications(rows[:2], 2, 8)
    topic = "tincoso/v1/%s/telemetry/heartbeat" % DEVICE
    assert [(k, t, d) for k, t, d in single] == [([0], topic, rows[0][3]), ([1], topic, rows[1][3])]
    rows[2] = (2, None, None, b"")  # a torn flash record
    pubs = rep.publications(rows, 50, 8)
    assert [p[0] for p in pubs] == [[0, 1], [2], [3, 4]], pubs
    assert pubs[1][1:] == (None, None)  # the torn record leaves with nothing sent
    batch = json.loads(pubs[2][2])
    assert pubs[2][1] == "tincoso/v1/%s/batch" % DEVICE
    assert [m["seq"] for m in batch["items"]] == [3, 4], batch
    assert rep.publications([(9, None, None, b"")], 1, 8) == [([9], None, None)]


@test
def the_flash_ring_keeps_a_reading_until_its_receipt():
    ring = RingBuffer("/work/reporter_ring.bin", 8, 512)
    box = RingOutbox(ring, 5000)
    rep = reporter(box)
    for seq in range(3):
        box.append(message(seq))
    for keys, _topic, _data in rep.publications([(d, None, None, d) for d in box.unsent(8)], box.depth, 8):
        rep.published(keys, 1000)
    assert box.depth == 3 and box.unsent(8) == []
    body = {"v": 1, "kind": "receipt", "device": DEVICE, "boot_id": BOOT, "stored": [[0, 1]]}
    body.update({"rejected": [], "ts": 1764126000000})
    assert rep.on_receipt(json.dumps(body)) == 2
    assert box.depth == 1 and rep.receipts_received == 1
    body["device"] = "vn-other-loa-01"
    raises(InvalidPayload, rep.on_receipt, json.dumps(body))
    assert rep.receipts_invalid == 1
    rep.connected()  # a new connection: the unreceipted reading goes again
    assert box.unsent(8) == [message(2)]
    ring.close()


@test
def without_receipts_the_puback_frees_the_ring():
    ring = RingBuffer("/work/reporter_plain.bin", 8, 512)
    box = RingOutbox(ring, 5000)
    rep = reporter(box, receipts=False)
    box.append(message(0))
    [(keys, _, _)] = rep.publications([(d, None, None, d) for d in box.unsent(8)], box.depth, 8)
    rep.published(keys, 1000)
    assert box.depth == 0
    ring.close()


run()
