"""A channel's buffer (webapp/read/channel.py) and the byte budget over all of them (buffers.py).

Also the table of a channel's refresh moves; how the hub drives them
against a real Redis is tests/test_hub.py's.
"""

from __future__ import annotations

import itertools
import sys

import pytest

from tests.support.state_tables import check_the_move, reachable
from webapp.read.buffers import Budget
from webapp.read.channel import REFRESH_MOVES, Channel, Refresh, RefreshState
from webapp.read.entries import Entry
from webapp.storage import events


def entry(n: int, event: str = events.CHUNK) -> Entry:
    return Entry(f"{n}-0", event, f'{{"text":"{n}"}}')


def answer(first: int, chunks: int, *, finished: bool) -> list[Entry]:
    """An answer's entries from id `first`: start, chunks, and end when finished."""
    run = [entry(first, events.START)]
    run += [entry(n) for n in range(first + 1, first + 1 + chunks)]
    if finished:
        run.append(entry(first + 1 + chunks, events.END))
    return run


def ids(entries: list[Entry] | None) -> list[str]:
    return [e.id for e in entries or []]


class Sink:
    def __init__(self) -> None:
        self.got: list[Entry] = []

    def deliver(self, entries: list[Entry]) -> None:
        self.got += entries
        for e in entries:
            assert e.sse_chunk  # as a held stream writes them

    def detach(self) -> None:
        self.got.append(entry(-1))


class Follower:
    def __init__(self, cursor: str = "0-0") -> None:
        self.cursor = cursor


def placed(budget: Budget | None = None, session_id: str = "s") -> Channel:
    channel = Channel(session_id, budget)
    channel.place("0-0")
    return channel


def test_merge_takes_only_runs_that_extend_what_it_holds() -> None:
    channel = Channel("s")
    channel.merge("0-0", [entry(1)])
    assert channel.newest is None, "an unplaced channel takes nothing"
    channel.place("0-0")
    channel.merge("0-0", [entry(1), entry(2)])
    channel.merge("5-0", [entry(6)])  # a gap: not contiguous
    channel.merge("1-0", [entry(2), entry(3)])  # overlaps: only 3 is new
    assert ids(channel.after("0-0")) == ["1-0", "2-0", "3-0"]
    assert ids(channel.after("2-0")) == ["3-0"]


def test_sinks_get_each_new_run_and_their_cursor_moves() -> None:
    channel = placed()
    follower, sink = Follower(), Sink()
    channel.join(follower)
    channel.attach(follower, sink)
    channel.merge("0-0", [entry(1), entry(2)])
    channel.merge("2-0", [entry(3)])
    assert ids(sink.got) == ["1-0", "2-0", "3-0"] and follower.cursor == "3-0"
    channel.clear()
    assert sink.got[-1].id == "-1-0" and channel.newest is None and not channel.live
    assert channel.followers == 1, "a detached follower reads for itself until it closes"


def test_bytes_count_each_entry_with_its_encodings_while_a_reader_needs_them() -> None:
    budget = Budget(None)
    channel = placed(budget)
    reader = Follower()
    channel.join(reader)
    channel.merge("0-0", [entry(1), entry(2)])
    bare = sum(e.size for e in channel.entries)
    assert channel.bytes == budget.used == bare > 0
    one = channel.entries[0]
    sse = one.sse  # the reader asks for it: counted as it is made
    assert channel.bytes == bare + sys.getsizeof(sse)
    assert one.sse is sse, "made once, then shared"
    reader.cursor = "1-0"
    channel.merge("2-0", [entry(3)])  # the reader is past entry 1: its encoding goes
    assert one._sse is None and channel.bytes == budget.used == sum(e.size for e in channel.entries)
    channel.entries[1].poll_json  # noqa: B018 (made and counted)
    channel.leave(reader)  # nobody reads the buffer any more
    assert all(e.encoded_size == 0 for e in channel.entries)
    channel.release()
    assert budget.used == 0 and channel.bytes == 0


def test_a_sinks_encodings_last_one_merge() -> None:
    channel = placed()
    follower, sink = Follower(), Sink()
    channel.join(follower)
    channel.attach(follower, sink)
    channel.merge("0-0", [entry(1), entry(2)])
    assert ids(sink.got) == ["1-0", "2-0"]
    assert all(e.encoded_size == 0 for e in channel.entries)
    assert channel.bytes == sum(e.size for e in channel.entries)


def test_past_the_budget_history_goes_first_and_the_answer_under_way_stays() -> None:
    channels: list[Channel] = []
    budget = Budget(10**9, lambda: channels)
    done, running = placed(budget, "done"), placed(budget, "running")
    channels += [done, running]
    done.merge("0-0", answer(1, 50, finished=True) + answer(60, 50, finished=True))
    running.merge("0-0", answer(1, 50, finished=True) + answer(60, 50, finished=False))
    # A limit that trimming history alone meets.
    history = sum(e.size for e in done.entries) + sum(e.size for e in running.entries[:52])
    budget.limit = (budget.used - history) * 2
    budget.trim()
    assert done.entries == [] and done.base == "111-0", "a finished session keeps nothing"
    assert ids(running.entries)[0] == "60-0", "the answer under way stays whole"
    assert running.base == "52-0" and running.after("52-0") == running.entries
    assert running.after("51-0") is None, "older history: read from Redis"
    assert budget.used == done.bytes + running.bytes == sum(e.size for e in running.entries)


def test_then_the_answers_own_entries_go_but_never_what_a_reader_has_ahead() -> None:
    channels: list[Channel] = []
    budget = Budget(10**9, lambda: channels)
    channel = placed(budget)
    channels.append(channel)
    reader = Follower("30-0")
    channel.join(reader)
    channel.merge("0-0", answer(1, 100, finished=False))
    budget.limit = 1
    budget.trim()
    assert channel.base == "30-0" and ids(channel.after("30-0"))[0] == "31-0"
    assert channel.after(reader.cursor) == channel.entries[:]
    behind = Follower("10-0")  # older than the buffer: it reads Redis, and protects nothing
    channel.join(behind)
    reader.cursor = "90-0"
    budget.trim()
    assert channel.base == "90-0" and ids(channel.entries) == [f"{n}-0" for n in range(91, 102)]
    channel.leave(reader)
    budget.trim()
    assert channel.entries == [] and channel.newest == "101-0", "still placed: notices go on"
    assert budget.used == 0


def test_a_merge_past_the_limit_trims_and_the_next_trim_waits_for_more() -> None:
    channels: list[Channel] = []
    budget = Budget(sum(entry(n).size for n in range(1, 101)), lambda: channels)
    channel = placed(budget)
    channels.append(channel)
    channel.merge("0-0", [entry(n) for n in range(1, 101)])
    assert budget.trims == 0 and len(channel.entries) == 100
    channel.merge("100-0", [entry(101)])
    assert budget.trims == 1 and channel.entries == [] and channel.base == "101-0"
    for n in range(102, 190):
        channel.merge(f"{n - 1}-0", [entry(n)])
    assert budget.trims == 1, "under the limit again: no trim"
    # Every entry with base < id <= newest is still in `entries`.
    assert ids(channel.after(channel.base)) == [f"{n}-0" for n in range(102, 190)]


# -- the refresh's state table ---------------------------------------------------------


def refresh_at(state: RefreshState) -> Refresh:
    """A refresh at `state`, reached through allowed moves only."""
    refresh = Refresh()
    path = {
        RefreshState.CURRENT: [],
        RefreshState.STALE: [RefreshState.STALE],
        RefreshState.DUE: [RefreshState.DUE],
        RefreshState.READING: [RefreshState.DUE, RefreshState.READING],
    }[state]
    for step in path:
        refresh.move(step)
    assert refresh.state is state
    return refresh


def test_a_channel_starts_current_and_every_refresh_state_can_get_current_again() -> None:
    assert Channel("s").refresh.state is RefreshState.CURRENT
    assert set(REFRESH_MOVES) == set(RefreshState)
    for state in RefreshState:
        assert RefreshState.CURRENT in reachable(REFRESH_MOVES, state), state


@pytest.mark.parametrize(
    ("state", "to"), list(itertools.product(RefreshState, RefreshState)), ids=lambda s: s.value
)
def test_a_refresh_moves_only_as_its_table_allows(state: RefreshState, to: RefreshState) -> None:
    check_the_move(refresh_at(state), REFRESH_MOVES, "channel refresh", to)


def test_a_notice_that_goes_unmerged_leaves_a_read_due_or_the_channel_stale() -> None:
    """`fall_behind`: the refresher reads again, or the next catch-up starts one."""
    expected = {
        RefreshState.CURRENT: RefreshState.STALE,  # nobody reads: the next catch-up will
        RefreshState.STALE: RefreshState.STALE,
        RefreshState.DUE: RefreshState.DUE,  # the refresher is about to read anyway
        RefreshState.READING: RefreshState.DUE,  # read again once this read is done
    }
    for state, after in expected.items():
        refresh = refresh_at(state)
        refresh.fall_behind()
        assert refresh.state is after, state
        assert refresh.running is (after in (RefreshState.DUE, RefreshState.READING))
