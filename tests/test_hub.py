"""The hub (webapp/read/hub.py): followers, notices, gaps, resets, sinks, and a lost pub/sub.

It runs in a gevent-patched child (the `gevent` marker), as in a web process:
the hub's listener waits on its pub/sub socket beside the test. Entries are
written by the real writer (writer.py), so notices are the real ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest
import redis

from tests.conftest import dispose, make_app
from tests.support.processes import RedisServer, wait_for
from webapp.exceptions import HubClosed, Reset
from webapp.read import reader
from webapp.read.entries import Entry
from webapp.read.follower import Poll
from webapp.read.hub import Hub
from webapp.storage import events, jobs, keys
from webapp.storage.extensions import redis_store
from webapp.write.writer import StreamWriter

pytestmark = pytest.mark.gevent


def open_hub(app, **kw) -> Iterator[Hub]:
    hub = Hub(app, **kw)
    yield hub
    hub.close()
    if hub._listener is not None:  # a test's hub must not outlive the test
        hub._listener.kill()


@pytest.fixture()
def hub(app) -> Iterator[Hub]:
    yield from open_hub(app)


@pytest.fixture()
def client(app) -> redis.Redis:
    return redis_store.client_for(app)


def writer_for(client: redis.Redis, session_id: str, message_id: str, **kw) -> StreamWriter:
    assert jobs.claim(client, session_id, message_id).active is None
    kw.setdefault("stream_ttl_seconds", 3600)
    kw.setdefault("maxlen", 10_000)
    return StreamWriter(client, session_id, message_id, 1, **kw)


def chunk(writer: StreamWriter, message_id: str, text: str) -> str:
    return writer.append(events.CHUNK, events.chunk_data(message_id, text)).entry_id


def range_reads(client: redis.Redis) -> int:
    """XRANGE calls the server has answered so far."""
    return client.info("commandstats").get("cmdstat_xrange", {}).get("calls", 0)


def poll(hub: Hub, session_id: str, cursor: str, timeout_seconds: float, limit: int) -> Poll:
    """A long-poll's answer, as the poll's plan gets it (webapp/http/poll_plan.py)."""
    with hub.follow(session_id, cursor) as follower:
        return follower.poll(timeout_seconds, limit)


def texts(entries: list[Entry]) -> list[str]:
    return [entry.parsed()["text"] for entry in entries]


def listening(hub: Hub) -> None:
    """Wait until the hub's listener has subscribed (a follow starts it)."""
    wait_for(
        lambda: (
            hub._listener is not None and hub._client.pubsub_numsub(keys.EVENTS_CHANNEL)[0][1] > 0
        ),
        what="the hub to subscribe",
    )


def test_live_entries_reach_followers_from_notices_alone(
    hub: Hub, client: redis.Redis, unique: str
) -> None:
    session_id = f"live{unique}"
    first, second = hub.follow(session_id, "0-0"), hub.follow(session_id, "0-0")
    assert first.next_batch(0) == second.next_batch(0) == []  # places the channel
    listening(hub)
    writer = writer_for(client, session_id, "live-msg")
    chunk(writer, "live-msg", "zero")
    # Once an entry came in live, the re-read that follows a subscribe is done.
    got = first.next_batch(5)
    wait_for(lambda: not first._channel.refresh.running, what="the subscribe's re-read")
    reads = range_reads(client)
    for text in ("one", "two", "three"):
        chunk(writer, "live-msg", text)
    while len(got) < 4:
        got += first.next_batch(5)
    assert texts(got) == ["zero", "one", "two", "three"]
    assert second.next_batch(5) == got, "both followers see each entry once, in order"
    assert second.next_batch(0) == []
    assert range_reads(client) == reads, "live entries cost no range read"
    assert got[0].sse is second._channel.entries[0].sse  # encoded once, shared


def test_a_lost_notice_is_found_by_a_range_read(hub: Hub, client: redis.Redis, unique: str) -> None:
    session_id = f"gap{unique}"
    writer = writer_for(client, session_id, "gap-msg")
    first = chunk(writer, "gap-msg", "one")
    follower = hub.follow(session_id, first)
    assert follower.next_batch(0) == []
    listening(hub)
    # An entry whose notice never came, as if the pub/sub dropped it.
    lost = client.xadd(
        keys.stream(session_id),
        {keys.ENTRY_EVENT: events.CHUNK, keys.ENTRY_DATA: events.chunk_data("gap-msg", "two")},
    )
    client.hset(keys.meta(session_id), keys.META_LAST_ID, lost)
    chunk(writer, "gap-msg", "three")  # its notice names `lost` as the entry before it
    got: list[Entry] = []
    while len(got) < 2:
        got += follower.next_batch(5)
    assert texts(got) == ["two", "three"]


def test_a_cursor_older_than_the_stream_resets_to_its_floor(
    hub: Hub, client: redis.Redis, unique: str
) -> None:
    session_id = f"reset{unique}"
    writer = writer_for(client, session_id, "reset-msg", maxlen=2)
    ids = [chunk(writer, "reset-msg", str(i)) for i in range(4)]
    writer.finish(
        events.END,
        events.end_data(
            "reset-msg", finish_reason="stop", usage=None, duration_ms=1, chunks=4, text_length=4
        ),
    )
    with pytest.raises(Reset) as reset:
        hub.follow(session_id, ids[0]).next_batch(0)
    assert reset.value.floor == ids[2]  # the newest entry trimmed away
    answer = poll(hub, session_id, ids[0], 0, 10)
    assert (answer.entries, answer.cursor, answer.reset) == ([], ids[2], True)
    after_floor = poll(hub, session_id, ids[2], 0, 10)
    assert [e.event for e in after_floor.entries] == ["chunk", "end"] and not after_floor.reset


def test_a_first_follower_from_far_back_reads_the_whole_stream_with_nothing_new_written(
    hub: Hub, client: redis.Redis, unique: str
) -> None:
    session_id = f"far{unique}"
    writer = writer_for(client, session_id, "far-msg")
    count = reader.CATCH_UP_BATCH + 300
    for n in range(count):
        chunk(writer, "far-msg", str(n))
    follower = hub.follow(session_id, "0-0")
    got: list[Entry] = []
    while batch := follower.next_batch(0, 256):  # as an SSE body reads
        got += batch
    assert texts(got) == [str(n) for n in range(count)], "no stop at a range read's batch"


def test_a_follower_behind_the_trimmed_buffer_reads_redis_with_no_gap_and_no_duplicate(
    app, client: redis.Redis, unique: str
) -> None:
    session_id = f"budget{unique}"
    hubs = open_hub(app, buffer_bytes=40_000)
    hub = next(hubs)
    try:
        reading = hub.follow(session_id, "0-0")
        assert reading.next_batch(0) == []  # places the channel
        listening(hub)
        channel = reading._channel
        writer = writer_for(client, session_id, "budget-msg")
        written = [chunk(writer, "budget-msg", str(n)) for n in range(400)]
        wait_for(lambda: channel.newest == written[-1], what="the notices")
        # Past the budget, but a follower reading the buffer keeps what it has ahead.
        assert hub.budget.used > hub.budget.limit and channel.base == "0-0"
        got = reading.next_batch(0, 100)
        reading.close()  # as a long-poll loop between two polls
        written.append(chunk(writer, "budget-msg", "400"))
        wait_for(lambda: channel.newest == written[-1], what="the notice")
        assert channel.after(got[-1].id) is None, "trimmed past the follower's cursor"
        assert hub.budget.used <= hub.budget.limit
        reads = range_reads(client)
        with hub.follow(session_id, got[-1].id) as resumed:
            while batch := resumed.next_batch(0, 64):
                got += batch
            assert range_reads(client) > reads, "the trimmed part came from Redis"
            written.append(chunk(writer, "budget-msg", "401"))
            got += resumed.next_batch(5)
        assert [e.id for e in got] == written, "each entry once, in order"
        assert texts(got) == [str(n) for n in range(402)]
    finally:
        next(hubs, None)


def test_a_poll_loop_on_a_tiny_budget_gets_each_entry_once_while_entries_stream(
    app, client: redis.Redis, unique: str
) -> None:
    session_id = f"loop{unique}"
    hubs = open_hub(app, buffer_bytes=5_000)  # about 20 entries
    hub = next(hubs)
    try:
        writer = writer_for(client, session_id, "loop-msg")
        written = [chunk(writer, "loop-msg", "0")]
        assert poll(hub, session_id, written[0], 0, 16).entries == []  # places the channel
        listening(hub)

        def write() -> None:
            for n in range(1, 300):
                written.append(chunk(writer, "loop-msg", str(n)))
                if n % 10 == 0:
                    gevent.sleep(0)  # let the poll loop run in between (a yield, not a wait)

        producer = gevent.spawn(write)
        got: list[Entry] = []
        cursor = written[0]
        # Between two polls nothing protects the loop's place: trims pass it.
        while not (producer.dead and cursor == written[-1]):
            answer = poll(hub, session_id, cursor, 5, 16)
            assert not answer.reset
            got += answer.entries
            cursor = answer.cursor
        assert hub.budget.trims > 0
        assert [e.id for e in got] == written[1:], "each entry once, in order"
    finally:
        next(hubs, None)


class ListSink:
    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.detached = False

    def deliver(self, entries: list[Entry]) -> None:
        self.entries += entries

    def detach(self) -> None:
        self.detached = True


def test_a_caught_up_follower_is_written_to_by_its_channel_until_the_hub_closes(
    app, client: redis.Redis, unique: str
) -> None:
    session_id = f"sink{unique}"
    hubs = open_hub(app)
    hub = next(hubs)
    follower = hub.follow(session_id, "0-0")
    assert follower.next_batch(0) == [] and follower.caught_up()
    listening(hub)
    sink = ListSink()
    follower.attach(sink)
    writer = writer_for(client, session_id, "sink-msg")
    last = [chunk(writer, "sink-msg", text) for text in ("one", "two")][-1]
    wait_for(lambda: len(sink.entries) == 2, what="the channel to deliver")
    assert texts(sink.entries) == ["one", "two"] and follower.cursor == last
    hub.close()
    assert sink.detached
    with pytest.raises(HubClosed):
        follower.next_batch(1)
    next(hubs, None)


def rest(writer: StreamWriter, how: str) -> None:
    """Bring `wait-msg` to rest: its end, or a pause for a decision."""
    if how == events.WAITING:
        writer.append(events.WAITING, events.waiting_data("wait-msg", [("call-1", "approval")]))
        return
    data = events.end_data(
        "wait-msg", finish_reason="stop", usage=None, duration_ms=1, chunks=2, text_length=6
    )
    writer.finish(events.END, data)


@pytest.mark.parametrize("how", [events.END, events.WAITING])
def test_a_whole_answer_wait_returns_when_the_message_ends_or_waits(
    hub: Hub, client: redis.Redis, unique: str, how: str
) -> None:
    session_id = f"wait{unique}"
    writer = writer_for(client, session_id, "wait-msg")
    cursor = chunk(writer, "wait-msg", "one")
    # Longer than the join below: a wait that only its time ends fails the test.
    waited = gevent.spawn(hub.wait_until_at_rest, session_id, "wait-msg", cursor, 120)
    # The end is written once the wait follows the session, not after a pause.
    wait_for(
        lambda: (channel := hub.channel(session_id)) is not None and channel.followers == 1,
        what="the wait to follow the session",
    )
    assert not waited.dead, "nothing at rest after the cursor yet: it must wait"
    chunk(writer, "wait-msg", "two")
    rest(writer, how)
    waited.join(timeout=20)
    assert waited.dead and waited.successful(), f"`{how}` must end the wait"
    assert client.xlen(keys.stream(session_id)) == 3


def test_the_listener_comes_back_after_redis_restarts(
    base_env: dict[str, str], log_dir: Path, unique: str
) -> None:
    server = RedisServer(log_dir).start()
    env = dict(base_env, REDIS_URL=server.url, DATABASE_URL=f"sqlite:///{log_dir / unique}.db")
    app = make_app(env)
    hubs = open_hub(app)
    hub = next(hubs)
    try:
        client = redis_store.client_for(app)
        session_id = f"restart{unique}"
        follower = hub.follow(session_id, "0-0")
        assert follower.next_batch(0) == []
        listening(hub)
        server.stop()
        server = RedisServer(log_dir, port=server.port).start()
        listening(hub)
        writer = writer_for(client, session_id, "restart-msg")
        chunk(writer, "restart-msg", "after")
        got: list[Entry] = []
        while not got:
            got = follower.next_batch(5)
        assert texts(got) == ["after"]
    finally:
        next(hubs, None)
        dispose(app)
        server.stop()
