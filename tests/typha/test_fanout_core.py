"""The fan-out core driven with explicit times, a real cache and real client
protocol objects, no sockets: what it writes to whom, when it wakes, and
what it decides about slow, silent and surplus agents."""

from __future__ import annotations

from snapshot import SnapshotCache, canonical_json
from syncproto import (
    CAP_ZSTD,
    CLIENT_CAPS,
    ClientConnection,
    CloseReason,
    Delta,
    Limits,
)
from syncproto.encoding import FrameEncoder
from syncproto.frames import HEADER
from syncproto.stream import StreamPolicy
from typha.fanout.core import Abort, Action, Close, Fanout, WakeAt, Write
from typha.fanout.limits import ServerLimits

PLAIN = CLIENT_CAPS - {CAP_ZSTD}
LIMITS = Limits(ping_interval=10.0, idle_timeout=60.0, pong_timeout=10.0)


def make_cache(keys: int = 3, *, chunk_bytes: int = 64) -> SnapshotCache:
    encoder = FrameEncoder(max_frame=LIMITS.max_frame, chunk_bytes=chunk_bytes)
    cache = SnapshotCache(encode_batch=encoder.batch, encode_snapshot=encoder.snapshot)
    cache.load([(f"/k/{i}", canonical_json({"v": i, "pad": "x" * 40})) for i in range(keys)], 1)
    return cache


def put(cache: SnapshotCache, key: str = "/k/0") -> None:
    cache.apply([(key, canonical_json({"v": cache.revision}))], cache.revision + 1)


def fanout(cache: SnapshotCache, **kw: object) -> Fanout[str]:
    limits = kw.pop("limits", ServerLimits())
    ready = kw.pop("ready", lambda: True)
    return Fanout(
        cache,
        server_id="t",
        ready=ready,  # type: ignore[arg-type]
        now=0.0,
        proto_limits=LIMITS,
        limits=limits,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def writes_to(actions: list[Action[str]], conn: str) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Write) and conn in a.conns)


class Agent:
    """A client protocol object whose bytes go through the core as `name`."""

    def __init__(self, core: Fanout[str], name: str, now: float = 0.0, **kw: object) -> None:
        self.core = core
        self.name = name
        self.client = ClientConnection(node=name, now=now, limits=LIMITS, **kw)  # type: ignore[arg-type]
        self.actions = core.connected(name, now, peer=f"peer-{name}", cert=None, tls=False)
        hello = b"".join(self.client.data_to_send())
        self.actions += core.received(name, hello, now)
        self.take(self.actions, now)

    def take(self, actions: list[Action[str]], now: float = 0.0) -> list[object]:
        """Feed the client what the actions write to it; its messages."""
        return self.client.receive_data(writes_to(actions, self.name), now)


def run_pass(core: Fanout[str], now: float) -> list[Action[str]]:
    assert core.pass_due(now)
    actions = core.run_pass(now)
    core.pass_done(0.0)
    return actions


def test_agents_at_one_position_get_one_write_of_the_same_bytes() -> None:
    cache = make_cache()
    core = fanout(cache)
    agents = [Agent(core, f"n{i}") for i in range(5)]
    assert all(a.client.synced for a in agents)
    put(cache)
    before = core.stats.writes
    assert core.notify(1.0) == [WakeAt(1.0)]
    actions = run_pass(core, 1.0)
    writes = [a for a in actions if isinstance(a, Write)]
    assert len(writes) == 1  # one position, one write action
    assert sorted(writes[0].conns) == [a.name for a in agents]
    for agent in agents:
        msgs = agent.take(actions)
        assert [type(m) for m in msgs] == [Delta]
        assert agent.client.revision == cache.revision
    assert core.stats.writes - before == 5


def test_an_agent_behind_the_others_gets_its_own_merged_write() -> None:
    cache = make_cache()
    core = fanout(cache)
    early = Agent(core, "early")
    put(cache)
    core.notify(1.0)
    run_pass(core, 1.0)  # early is now at the head; its bytes are not fed on purpose
    late = Agent(core, "late")  # snapshots at the head
    put(cache)
    put(cache, "/k/1")
    core.notify(2.0)
    actions = run_pass(core, 2.0)
    writes = [a for a in actions if isinstance(a, Write)]
    # Both were at the same position after the first pass: one write.
    assert [sorted(w.conns) for w in writes] == [["early", "late"]]
    assert late.take(actions)
    assert late.client.revision == cache.revision
    assert early.client.revision < cache.revision  # it never took the first pass's bytes


def test_a_pass_after_a_long_one_is_held_back_and_takes_everything_since() -> None:
    cache = make_cache()
    core = fanout(cache, pacing=1.0)
    agent = Agent(core, "a", now=9.0)  # its first ping is due at 19
    put(cache)
    assert core.notify(10.0) == [WakeAt(10.0)]  # idle: at once
    agent.take(core.run_pass(10.0))
    core.pass_done(0.025)  # the pass took 25 ms: the next no sooner than 50 ms on
    for _ in range(5):
        put(cache)
        wakes = core.notify(10.01)
        assert wakes in ([WakeAt(10.05)], [])
    assert core.stats.paced_passes == 1  # scheduled once, for all five
    assert not core.pass_due(10.04)
    assert core.next_wakeup() == 10.05
    actions = core.run_pass(10.05)
    assert core.stats.fanouts == 2
    assert len([a for a in actions if isinstance(a, Write)]) == 1  # five batches, one write
    msgs = agent.take(actions)
    assert len(msgs) == 5
    assert all(isinstance(m, Delta) for m in msgs)
    assert agent.client.revision == cache.revision


def test_pacing_zero_never_holds_a_pass_back() -> None:
    cache = make_cache()
    core = fanout(cache, pacing=0.0)
    for t in (1.0, 2.0, 3.0):
        put(cache)
        assert core.notify(t) == [WakeAt(t)]
        core.run_pass(t)
        core.pass_done(5.0)
    assert core.stats.paced_passes == 0


def test_a_large_snapshot_goes_out_a_high_water_mark_at_a_time() -> None:
    cache = make_cache(keys=400, chunk_bytes=512)
    limits = ServerLimits(write_high_water=4096)
    core = fanout(cache, limits=limits)
    agent = Agent(core, "a", caps=PLAIN)  # uncompressed: 28 kB of snapshot
    first = writes_to(agent.actions, "a")
    assert not agent.client.synced
    assert 4096 <= len(first) < 4096 + 4096  # stops at the budget...
    assert WakeAt(0.0) in agent.actions  # ...and asks to be woken for more
    rounds = 0
    while not agent.client.synced:
        rounds += 1
        assert core.next_wakeup() == 0.0
        agent.take(core.handle_timer(0.0))
    assert rounds > 3
    assert core.next_wakeup() != 0.0  # nothing left to pump


def test_a_paused_agent_gets_no_snapshot_until_it_resumes() -> None:
    cache = make_cache(keys=400, chunk_bytes=512)
    core = fanout(cache, limits=ServerLimits(write_high_water=4096))
    agent = Agent(core, "a", caps=PLAIN)
    assert core.paused("a", 0.5, buffered=5000) == []
    assert writes_to(core.handle_timer(0.5), "a") == b""
    assert core.max_lag(2.5) == 2.0
    while not agent.client.synced:
        agent.take(core.resumed("a", 3.0) + core.handle_timer(3.0))
    assert core.max_lag(4.0) == 0.0


def test_a_paused_agent_is_dropped_once_what_it_may_hold_passes_the_limit() -> None:
    cache = make_cache()
    policy = StreamPolicy(max_buffer_bytes=600)
    core = fanout(cache, limits=ServerLimits(stream=policy))
    Agent(core, "slow")
    Agent(core, "fine")
    core.paused("slow", 1.0, buffered=500)
    dropped: list[Action[str]] = []
    for i in range(20):
        put(cache)
        core.notify(2.0 + i)
        actions = core.run_pass(2.0 + i)
        core.pass_done(0.0)
        dropped += [a for a in actions if isinstance(a, Abort)]
        if dropped:
            break
    assert dropped == [Abort("slow", CloseReason.SLOW_CLIENT)]
    assert writes_to(actions, "fine")  # the others go on


def test_an_agent_pushing_back_past_max_lag_is_dropped_by_its_timer() -> None:
    cache = make_cache()
    core = fanout(cache, limits=ServerLimits(stream=StreamPolicy(max_lag=5.0)))
    Agent(core, "a")
    core.paused("a", 1.0, buffered=10)
    assert core.next_wakeup() == 6.0
    assert Abort("a", CloseReason.SLOW_CLIENT) in core.handle_timer(6.0)


def test_a_quiet_agent_in_a_position_is_pinged_then_closed() -> None:
    cache = make_cache()
    core = fanout(cache)
    agent = Agent(core, "a")
    assert core.next_wakeup() == 10.0
    agent.take(core.handle_timer(10.0))
    assert agent.client.data_to_send()  # the client answers the core's PING (not fed back)
    actions = core.handle_timer(20.0)  # no pong
    assert Close("a", CloseReason.PONG_TIMEOUT) in actions
    core.lost("a", 20.1)
    assert core.stats.closed[CloseReason.PONG_TIMEOUT] == 1
    assert not core.clients


def test_a_pong_from_an_agent_in_a_position_is_timed() -> None:
    cache = make_cache()
    core = fanout(cache)
    agent = Agent(core, "a")
    agent.take(core.handle_timer(10.0), 10.2)  # the client answers the PING
    pong = b"".join(agent.client.data_to_send())
    assert pong
    core.received("a", pong, 10.25)
    assert core.stats.ping_rtt.count == 1
    # The pong deadline is void: nothing happens at 20 but planning the next ping.
    assert core.handle_timer(20.0) == [WakeAt(20.25)]
    assert core.next_wakeup() == 20.25  # the next ping, ten seconds after it last heard


def test_connections_past_the_limit_are_refused_with_a_goodbye() -> None:
    cache = make_cache()
    core = fanout(cache, limits=ServerLimits(max_connections=1))
    Agent(core, "a")
    actions = core.connected("b", 1.0, peer="p", cert=None, tls=False)
    assert Close("b", CloseReason.CONNECTION_LIMIT) in actions
    assert writes_to(actions, "b")  # its GOODBYE
    assert list(core.clients) == ["a"]
    assert core.stats.rejected_limit == 1


def test_a_draining_core_refuses_and_closes() -> None:
    cache = make_cache()
    core = fanout(cache)
    Agent(core, "a")
    core.draining = True
    assert Close("b", CloseReason.SHUTDOWN) in core.connected(
        "b", 1.0, peer="p", cert=None, tls=False
    )
    assert Close("a", CloseReason.SHUTDOWN) in core.close("a", CloseReason.SHUTDOWN, 1.0)
    put(cache)
    core.notify(2.0)
    assert writes_to(core.run_pass(2.0), "a") == b""  # nothing after its GOODBYE


def test_a_hello_before_the_cache_is_ready_is_answered_by_the_next_pass() -> None:
    cache = make_cache()
    ready = [False]
    core = fanout(cache, ready=lambda: ready[0])
    agent = Agent(core, "a")
    assert agent.client.server_hello is None
    ready[0] = True
    put(cache)
    core.notify(1.0)
    agent.take(core.run_pass(1.0))
    assert agent.client.synced
    assert agent.client.revision == cache.revision


def test_pending_tls_handshakes_count_against_the_limit_until_they_expire() -> None:
    cache = make_cache()
    core = fanout(cache, limits=ServerLimits(max_connections=1))
    core.tls_accepted("h", 0.0)
    assert Close("b", CloseReason.CONNECTION_LIMIT) in core.connected(
        "b", 1.0, peer="p", cert=None, tls=False
    )
    core.housekeeping(LIMITS.handshake_timeout + 2.0)
    assert core.stats.tls_handshake_failures == 1
    assert Close("c", CloseReason.CONNECTION_LIMIT) not in core.connected(
        "c", 20.0, peer="p", cert=None, tls=False
    )


def test_a_protocol_error_costs_that_agent_a_goodbye_and_nothing_else() -> None:
    cache = make_cache()
    core = fanout(cache)
    Agent(core, "a")
    actions = core.received("a", HEADER.pack(0, 250, 0, 0, 0), 1.0)  # no such message type
    assert any(isinstance(a, Close) and a.conn == "a" for a in actions)
    assert writes_to(actions, "a")  # the GOODBYE
    assert sum(core.stats.protocol_errors.values()) == 1


def test_bytes_sent_follow_an_agent_through_its_positions() -> None:
    cache = make_cache()
    core = fanout(cache)
    agent = Agent(core, "a")
    total = len(writes_to(agent.actions, "a"))
    for t in range(1, 4):
        put(cache)
        core.notify(float(t))
        total += len(writes_to(core.run_pass(float(t)), "a"))
        core.pass_done(0.0)
    assert core.bytes_sent("a") == total


def test_passes_over_many_agents_keep_within_the_write_budget_however_cheap() -> None:
    cache = make_cache()
    core = fanout(cache, pacing=1.0, writes_per_second=400.0)
    for i in range(10):  # 10 agents at 400 writes/s: passes 25 ms apart
        Agent(core, f"n{i}", now=0.9)
    put(cache)
    assert core.notify(1.0) == [WakeAt(1.0)]
    core.run_pass(1.0)
    core.pass_done(0.001)  # cheap: pacing alone would allow the next at 1.002
    put(cache)
    assert core.notify(1.005) == [WakeAt(1.025)]
    assert not core.pass_due(1.02)
    assert core.pass_due(1.025)
    core.run_pass(1.025)
    core.pass_done(0.05)  # expensive: pacing decides (1.025 + 0.1)
    put(cache)
    assert core.notify(1.1) == [WakeAt(1.125)]


def test_a_few_agents_are_not_held_back_by_the_write_budget() -> None:
    cache = make_cache()
    core = fanout(cache, pacing=1.0, writes_per_second=40_000.0)
    Agent(core, "only", now=0.9)
    put(cache)
    core.notify(1.0)
    core.run_pass(1.0)
    core.pass_done(0.0001)
    put(cache)
    assert core.notify(1.001) == [WakeAt(1.001)]  # 1 / 40,000 s is long past
