# The agent's portable core under real MicroPython: dead air, reporting policy, batching,
# the flash ring buffer and message building run unchanged.
from mptest import raises, run, test

from agent.core.backlog import batch_payload, overflow, plan_sends
from agent.core.dead_air import DeadAirDetector
from agent.core.messages import MessageBuilder, clock_ok, event_fields, heartbeat_fields
from agent.core.policy import Jitter, ReportingPolicy, device_seed
from agent.core.reporting import birth_fields, due_messages
from agent.core.ring import RingBuffer
from protocols import payloads


@test
def dead_air_hysteresis():
    d = DeadAirDetector(-50.0, 15.0, 10.0)
    edges = [d.update(-70.0, t) for t in range(16)]
    assert edges[15] == "start", edges
    assert d.active
    assert d.silent_for_s == 15
    edges = [d.update(-20.0, 16 + t) for t in range(11)]
    assert edges[10] == "end", edges
    assert not d.active


@test
def short_pause_is_not_dead_air():
    d = DeadAirDetector()
    for t in range(14):
        d.update(-70.0, t)
    d.update(-10.0, 14)
    for t in range(15, 29):
        assert d.update(-70.0, t) is None


@test
def policy_heartbeat_and_change():
    p = ReportingPolicy("vn-trangxa-loa-03", 30.0, 300.0, 0.1)
    assert p.heartbeat_due(0.0)
    p.heartbeat_sent(0.0)
    wait = p.next_heartbeat_in(0.0)
    assert 27.0 <= wait <= 33.0, wait
    audio = {"rms_dbfs": -20.0, "playing": True}
    assert p.telemetry_due("audio", audio, 0.0) == "first"
    p.telemetry_sent("audio", audio, 0.0)
    assert p.telemetry_due("audio", {"rms_dbfs": -21.0, "playing": True}, 1.0) is None
    assert p.telemetry_due("audio", {"rms_dbfs": -21.0, "playing": False}, 1.0) == "change:playing"


@test
def jitter_is_the_same_as_cpython():
    # The values CPython computes: a device spreads its reports the same on either port.
    assert device_seed("vn-trangxa-loa-03") == 242707102, device_seed("vn-trangxa-loa-03")
    spread = Jitter(242707102, 0.1).spread(30.0)
    assert abs(spread - 28.478160020895302) < 1e-6, spread


@test
def batching_plan():
    rows = [(i, "heartbeat", 500) for i in range(250)]
    groups = plan_sends(rows, 1000, 50, 100, 204800)
    assert [len(g) for g in groups] == [100, 100, 50], [len(g) for g in groups]
    assert plan_sends(rows[:3], 3, 50, 100, 204800) == [[0], [1], [2]]
    assert overflow(12, 10) == 2


@test
def build_and_batch_messages():
    b = MessageBuilder("vn-x-loa-01", "boot-1")
    items = []
    for seq in range(3):
        fields = heartbeat_fields({"uptime_s": 5.0}, 3, 0, 0)
        msg = b.build("heartbeat", fields, seq, 1764000000000, True, 5000)
        items.append(payloads.encode(msg))
    back = payloads.decode(batch_payload("vn-x-loa-01", items))
    assert [i["seq"] for i in back["items"]] == [0, 1, 2]
    ev = event_fields({"event": "fault_start", "code": "dead_air", "programme": None, "detail": "x" * 600})
    assert len(ev["detail"]) == 512
    assert "programme" not in ev


@test
def clock_marking():
    assert not clock_ok(1000, True)
    assert clock_ok(1764000000000, None)
    assert not clock_ok(1764000000000, False)


@test
def ring_buffer_on_flash_file():
    path = "/work/ring_test.bin"
    ring = RingBuffer(path, 4, 64)
    for i in range(6):
        ring.append(b"m%d" % i)
    assert ring.dropped == 2
    assert ring.peek(10) == [b"m2", b"m3", b"m4", b"m5"], ring.peek(10)
    ring.pop(2)
    ring.close()
    again = RingBuffer(path, 4, 64)
    assert again.peek(10) == [b"m4", b"m5"]
    raises(ValueError, again.append, b"x" * 100)
    again.close()


@test
def one_reporting_pass_decides_heartbeat_and_telemetry():
    policy = ReportingPolicy("vn-test-loa-01", 30, 300, now_s=0.0)
    beat = {"uptime_s": 1.0, "net_type": "wifi"}
    meter_only = {"amp_power_w": 60.0}
    due = due_messages(policy, {"heartbeat": beat, "audio": meter_only}, 0.0, False, 3, 1, 0)
    assert [k for k, _ in due] == ["heartbeat"], due  # a meter alone is no audio message
    assert due[0][1]["queue_depth"] == 3 and due[0][1]["queue_dropped"] == 1
    audio = {"rms_dbfs": -18.0, "amp_power_w": 60.0}
    due = due_messages(policy, {"heartbeat": beat, "audio": audio}, 1.0, False, 0, 0, 0)
    assert [k for k, _ in due] == ["audio"], due  # first audio; heartbeat not due yet
    assert due_messages(policy, {"heartbeat": beat, "audio": audio}, 2.0, False, 0, 0, 0) == []
    forced = due_messages(policy, {"heartbeat": beat, "audio": audio}, 3.0, True, 0, 0, 0)
    assert [k for k, _ in forced] == ["heartbeat", "audio"], forced
    birth = birth_fields(4, "speaker_cluster", "0.2.0-mpy", 0.5, "x" * 80)
    assert birth["heartbeat_s"] == 1.0 and len(birth["platform"]) == 64 and birth["bdseq"] == 4


@test
def mains_lost_sends_a_heartbeat_at_once_the_dying_gasp():
    policy = ReportingPolicy("vn-test-loa-01", 30, 300, now_s=0.0)
    on_grid = {"uptime_s": 1.0, "net_type": "4g", "mains": True}
    assert [k for k, _ in due_messages(policy, {"heartbeat": on_grid}, 0.0, False, 0, 0, 0)] == ["heartbeat"]
    assert due_messages(policy, {"heartbeat": on_grid}, 5.0, False, 0, 0, 0) == []
    on_battery = {"uptime_s": 6.0, "net_type": "4g", "mains": False}
    gasp = due_messages(policy, {"heartbeat": on_battery}, 6.0, False, 0, 0, 0)
    assert [(k, f["mains"]) for k, f in gasp] == [("heartbeat", False)], gasp
    # Once: the battery minutes are not spent on a heartbeat per poll.
    assert due_messages(policy, {"heartbeat": on_battery}, 7.0, False, 0, 0, 0) == []
    unknown = {"uptime_s": 8.0, "net_type": "4g", "mains": None}
    assert due_messages(policy, {"heartbeat": unknown}, 8.0, False, 0, 0, 0) == []


run()
