# Runs under MicroPython's unix port (tests/test_mcu_units.py): the flash ring with receipts,
# driven by the core's Reporter the way the MCU agent's drain() does.
import json
import os

from mptest import run, test

from agent.core.outbox import RingOutbox
from agent.core.policy import ReportingPolicy
from agent.core.reporter import Reporter
from agent.core.ring import RingBuffer
from protocols import payloads

FLASH = SCRIPT_ARGS[1]  # noqa: F821 -- set by the runner
DEVICE = "vn-test-loa-01"
BOOT = "b" * 16


def message(seq):
    return json.dumps({"kind": "event", "device": DEVICE, "boot_id": BOOT, "seq": seq}).encode()


def receipt(first, last, boot=BOOT, device=DEVICE):
    body = {"v": 1, "kind": "receipt", "device": device, "boot_id": boot}
    body.update({"stored": [[first, last]], "rejected": [], "ts": 1764126000000})
    return json.dumps(body).encode()


def outbox(name, receipts=True, capacity=8):
    os.mkdir(FLASH + "/" + name)
    ring = RingBuffer(FLASH + "/" + name + "/queue.ring", capacity, 256)
    box = RingOutbox(ring, 5000)
    for seq in range(5):
        box.append(message(seq))
    policy = ReportingPolicy(DEVICE, 30, 300, now_s=0.0)
    return box, Reporter(DEVICE, policy, box, receipts=receipts)


def publish(rep, rows, now_ms):
    """What the broker would get, and its PUBACKs, as McuAgent.drain() does it."""
    sent = []
    for keys, topic, data in rep.publications([(d, None, None, d) for d in rows], rep.store.depth, 8):
        sent.append((topic, data))
        rep.published(keys, now_ms)
    return sent


@test
def a_pubacked_reading_stays_in_flash_until_its_receipt():
    box, rep = outbox("receipt")
    sent = publish(rep, box.unsent(3), 1000)
    assert [t for t, _ in sent] == ["tincoso/v1/%s/event" % DEVICE] * 3, sent
    assert box.depth == 5 and box.unsent(10) == [message(3), message(4)]
    assert rep.on_receipt(receipt(1, 2)) == 0  # seq 0 not covered yet: FIFO waits
    assert rep.on_receipt(receipt(0, 0)) == 3
    assert box.depth == 2 and box.cleared == 3 and rep.receipts_received == 2


@test
def unreceipted_readings_are_sent_again_after_the_timeout_or_a_reconnect():
    box, rep = outbox("timeout")
    publish(rep, box.unsent(2), 1000)
    assert not box.check_timeout(5999)
    assert box.check_timeout(6000)
    assert box.unsent(10)[0] == message(0)
    publish(rep, box.unsent(5), 7000)
    assert box.unsent(10) == []
    rep.connected()
    assert len(box.unsent(10)) == 5


@test
def a_receipt_for_another_boot_or_device_clears_nothing():
    box, rep = outbox("other")
    publish(rep, box.unsent(5), 1000)
    assert rep.on_receipt(receipt(0, 4, boot="c" * 16)) == 0
    try:
        rep.on_receipt(receipt(0, 4, device="vn-other-loa-02"))
        raise AssertionError("a receipt for another device was taken")
    except payloads.InvalidPayload:
        pass
    assert box.depth == 5 and rep.receipts_invalid == 1


@test
def without_receipts_a_puback_frees_the_ring():
    box, rep = outbox("plain", receipts=False)
    publish(rep, box.unsent(2), 1000)
    assert box.depth == 3 and box.unsent(1) == [message(2)]


@test
def the_ring_dropping_its_oldest_keeps_the_in_flight_list_aligned():
    box, rep = outbox("full", capacity=5)
    publish(rep, box.unsent(2), 1000)
    assert box.append(message(5)) == 1  # seq 0 (in flight) dropped
    assert box.unsent(1) == [message(2)]
    assert rep.on_receipt(receipt(1, 1)) == 1
    assert box.depth == 4


@test
def a_full_ring_dropping_an_unsent_reading_during_a_send_pops_only_what_was_sent():
    box, rep = outbox("midsend", capacity=5)
    rows = box.unsent(2)  # seq 0, 1 go out; a command's result arrives before the PUBACK
    assert box.append(message(5)) == 1  # the full ring drops seq 0, not yet in flight
    publish(rep, rows, 1000)
    assert box.depth == 5 and box.unsent(10) == [message(2), message(3), message(4), message(5)]
    assert rep.on_receipt(receipt(1, 1)) == 1  # seq 1 leaves; seq 2 stays for its receipt
    assert box.unsent(1) == [message(2)]


@test
def without_receipts_a_drop_during_a_send_keeps_the_next_reading():
    box, rep = outbox("midsend-plain", receipts=False, capacity=5)
    rows = box.unsent(2)
    box.append(message(5))
    publish(rep, rows, 1000)
    assert box.unsent(10) == [message(2), message(3), message(4), message(5)]


run()
