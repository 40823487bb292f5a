# Delivery receipts' matching logic under real MicroPython: what a receipt clears, what is
# due to be sent again, and the protocol's receipt built and parsed on the device.
from mptest import raises, run, test

from agent.core import receipts
from protocols import payloads
from protocols.errors import InvalidPayload

DEVICE = "vn-trangxa-loa-03"


@test
def merge_and_cover():
    ranges = receipts.merge([[5, 7], [1, 2], [3, 4], [10, 12], [11, 15]])
    assert ranges == [[1, 7], [10, 15]], ranges
    covered = [s for s in range(17) if receipts.covers(ranges, s)]
    assert covered == [1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15], covered


@test
def receipt_clears_only_its_boot():
    entries = [(0, "boot1", 1), (1, "boot1", 2), (2, "boot2", 2), (3, "boot1", 9)]
    assert receipts.cleared(entries, "boot1", [[1, 2]]) == [0, 1]


@test
def due_after_timeout():
    assert receipts.due([(0, None), (1, 9000), (2, 1000)], 10000, 5000) == [0, 2]


@test
def parse_receipt():
    msg = payloads.receipts(DEVICE, "b1", [1, 2, 3], [7], 1)[0]
    assert receipts.parse(payloads.encode(msg), DEVICE) == ("b1", [[1, 3], [7, 7]])
    raises(InvalidPayload, receipts.parse, payloads.encode(msg), "other")
    bad = b'{"v":1,"kind":"receipt","device":"x","boot_id":"b","stored":[[2,1]],"rejected":[],"ts":1}'
    raises(InvalidPayload, receipts.parse, bad, "x")


run()
