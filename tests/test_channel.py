"""A channel's buffer (webapp/channel.py): one contiguous run of the newest entries."""

from __future__ import annotations

from webapp.channel import BUFFER_ENTRIES, Channel
from webapp.events import Entry


def entry(n: int) -> Entry:
    return Entry(f"{n}-0", "chunk", f'{{"text":"{n}"}}')


class Sink:
    def __init__(self) -> None:
        self.got: list[Entry] = []

    def deliver(self, entries: list[Entry]) -> None:
        self.got += entries

    def detach(self) -> None:
        self.got.append(entry(-1))


class Follower:
    cursor = "0-0"


def test_merge_takes_only_runs_that_extend_what_it_holds() -> None:
    channel = Channel("s")
    channel.merge("0-0", [entry(1)])
    assert channel.newest is None, "an unplaced channel takes nothing"
    channel.place("0-0")
    channel.merge("0-0", [entry(1), entry(2)])
    channel.merge("5-0", [entry(6)])  # a gap: not contiguous
    channel.merge("1-0", [entry(2), entry(3)])  # overlaps: only 3 is new
    assert [e.id for e in channel.after("0-0")] == ["1-0", "2-0", "3-0"]
    assert [e.id for e in channel.after("2-0")] == ["3-0"]


def test_the_buffer_trims_to_its_size_and_sends_older_cursors_to_redis() -> None:
    channel = Channel("s")
    channel.place("0-0")
    channel.merge("0-0", [entry(n) for n in range(1, 2 * BUFFER_ENTRIES + 2)])
    assert len(channel.entries) == BUFFER_ENTRIES
    assert channel.after("1-0") is None, "older than the buffer: read Redis"
    assert channel.after(channel.base) == channel.entries


def test_sinks_get_each_new_run_and_their_cursor_moves() -> None:
    channel = Channel("s")
    channel.place("0-0")
    follower, sink = Follower(), Sink()
    channel.live[follower] = sink
    channel.merge("0-0", [entry(1), entry(2)])
    channel.merge("2-0", [entry(3)])
    assert [e.id for e in sink.got] == ["1-0", "2-0", "3-0"] and follower.cursor == "3-0"
    channel.clear()
    assert sink.got[-1].id == "-1-0" and channel.newest is None and not channel.live
