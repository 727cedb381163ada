"""Polls make way for other requests (webapp/serving/priority.py): order, the bound, turns.

Run in a gevent-patched process, as the web serves. Each test drives a lane
of its own and checks the order in which greenlets got through, never how
fast they did.
"""

from __future__ import annotations

import gevent
import pytest

from tests.support.green import turn_until
from webapp.serving.priority import TURN, PollLane, next_turn

pytestmark = pytest.mark.gevent


def poll(lane: PollLane, order: list[str], name: str) -> gevent.Greenlet:
    def run() -> None:
        lane.wait_turn()
        order.append(name)

    return gevent.spawn(run)


def test_a_poll_goes_on_at_once_when_nothing_is_in_progress() -> None:
    lane = PollLane()
    lane.wait_turn()
    assert lane.waited == 0


def test_a_poll_waits_for_the_prompt_in_progress() -> None:
    lane = PollLane(max_wait_seconds=60)
    order: list[str] = []
    lane.prompt_started()
    waiting = poll(lane, order, "poll")
    turn_until(lambda: lane.waited == 1)
    for _ in range(20):  # the releaser has every chance to let it through: it must not
        next_turn()
    order.append("prompt")
    lane.prompt_ended()
    waiting.join(timeout=10)
    assert order == ["prompt", "poll"]


def test_a_parked_polls_connection_waits_for_quiet_only_while_a_prompt_is_in_progress() -> None:
    lane = PollLane(max_wait_seconds=60)
    lane.wait_quiet()  # nothing in progress: at once
    order: list[str] = []
    lane.prompt_started()

    def handed_back() -> None:
        lane.wait_quiet()
        order.append("poll")

    waiting = gevent.spawn(handed_back)
    turn_until(lambda: lane.waited == 1)
    order.append("prompt")
    lane.prompt_ended()
    waiting.join(timeout=10)
    assert order == ["prompt", "poll"]


def test_a_poll_is_not_starved_by_a_prompt_that_goes_on() -> None:
    lane = PollLane(max_wait_seconds=0.05)
    order: list[str] = []
    lane.prompt_started()
    poll(lane, order, "poll").join(timeout=10)
    assert order == ["poll"]  # through, while the prompt is still in progress
    lane.prompt_ended()


def test_waiting_polls_go_on_oldest_first_a_turn_at_a_time() -> None:
    lane = PollLane(max_wait_seconds=60)
    order: list[str] = []
    lane.prompt_started()
    polls = [poll(lane, order, f"poll {i}") for i in range(3 * TURN)]
    turn_until(lambda: lane.waited == len(polls))
    through: list[int] = []  # polls through so far, at each turn of the loop

    def watch() -> None:
        while len(order) < len(polls):
            through.append(len(order))
            next_turn()
        through.append(len(order))

    watcher = gevent.spawn(watch)
    lane.prompt_ended()
    gevent.joinall([*polls, watcher], timeout=10)
    assert order == [f"poll {i}" for i in range(3 * TURN)]
    # Between two turns, where other requests are served, at most TURN polls went on.
    assert max(b - a for a, b in zip(through, through[1:], strict=False)) <= TURN
