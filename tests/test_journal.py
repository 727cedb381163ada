"""The journal of tool steps (webapp/storage/journal.py): fencing, first-record-wins, inputs, resumes.

On a redis-server of this module's own, with the session claimed as a
prompt post claims it (jobs.claim, jobs.enqueue).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.processes import RedisServer
from webapp.storage import jobs, journal, keys
from webapp.storage.journal import NewCall

SID, MID = "session-1", "answer-1"
APPROVE = {"approved": True, "reason": None}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    server = RedisServer(Path(tmp_path_factory.mktemp("journal-redis"))).start()
    connection = redis.Redis.from_url(server.url, decode_responses=True)
    yield connection
    connection.close()
    server.stop()


@pytest.fixture(autouse=True)
def claimed(client: redis.Redis) -> None:
    client.flushdb()
    jobs.claim(client, SID, MID)
    jobs.enqueue(client, SID, MID)


def record(client: redis.Redis, step: int, *calls: NewCall, attempt: int = 1) -> str:
    output = {"text": f"step {step}", "calls": [call.call_id for call in calls]}
    return journal.record_step(client, SID, MID, attempt, step, output, list(calls)).status


def test_a_step_is_recorded_once_by_the_attempt_that_owns_the_answer(client: redis.Redis) -> None:
    assert record(client, 0, attempt=2) == "fenced"
    assert journal.read(client, SID, MID) is None
    assert record(client, 0, NewCall("c1", "search", None)) == "ok"
    again = journal.record_step(client, SID, MID, 1, 0, {"text": "other"}, [])
    assert again.status == "exists" and '"step 0"' in (again.record or "")
    read = journal.read(client, SID, MID)
    assert read is not None and read.steps == {0: {"text": "step 0", "calls": ["c1"]}}
    assert read.calls["c1"].status == journal.PENDING and read.paused is None


def test_the_next_answer_of_the_session_starts_a_journal_of_its_own(client: redis.Redis) -> None:
    record(client, 0, NewCall("c1", "search", None))
    client.delete(keys.active(SID))  # the answer ended (finish.lua releases the claim)
    jobs.claim(client, SID, "answer-2")
    journal.record_step(client, SID, "answer-2", 1, 0, {"text": "new"}, [])
    assert journal.read(client, SID, MID) is None
    read = journal.read(client, SID, "answer-2")
    assert read is not None and read.steps == {0: {"text": "new"}} and read.calls == {}


def test_a_call_started_and_never_finished_is_seen_by_the_next_attempt(
    client: redis.Redis,
) -> None:
    record(client, 0, NewCall("c1", "pay", None))
    assert journal.start_call(client, SID, MID, 1, "c1").status == "ok"
    jobs.begin(client, jobs.Job(SID, MID, attempt=2))  # the worker was lost: attempt 2
    assert journal.start_call(client, SID, MID, 1, "c1").status == "fenced"
    found = journal.start_call(client, SID, MID, 2, "c1")
    assert found.status == "running" and '"attempt":1' in (found.record or "")
    in_doubt = {"status": "in_doubt", "output": None, "error": None}
    assert journal.record_result(client, SID, MID, 2, "c1", in_doubt).status == "ok"
    # A result is final: no later write, start or result, changes it.
    ok = {"status": "ok", "output": [], "error": None}
    assert journal.record_result(client, SID, MID, 2, "c1", ok).status == "final"
    assert journal.start_call(client, SID, MID, 2, "c1").status == "final"
    call = journal.read(client, SID, MID).calls["c1"]  # type: ignore[union-attr]
    assert call.status == "in_doubt" and call.result == in_doubt and call.attempt == 1
    assert journal.start_call(client, SID, MID, 2, "nope").status == "unknown"


def test_a_result_keeps_its_json_as_it_was(client: redis.Redis) -> None:
    """Empty lists stay lists and big numbers stay whole: the scripts never decode a result."""
    record(client, 0, NewCall("c1", "list", None))
    journal.start_call(client, SID, MID, 1, "c1")
    output = {"rows": [], "big": 2**63 + 1, "nested": {"a": [{}]}}
    result = {"status": "ok", "output": output, "error": None}
    journal.record_result(client, SID, MID, 1, "c1", result)
    assert journal.read(client, SID, MID).calls["c1"].result == result  # type: ignore[union-attr]


def test_inputs_are_stored_once_and_the_last_one_makes_the_answer_due(
    client: redis.Redis,
) -> None:
    record(client, 0, NewCall("a1", "refund", "approval"), NewCall("o1", "pick", "output"))
    assert journal.give_input(client, SID, MID, "zz", "approval", APPROVE, "yes").verdict == (
        "unknown"
    )
    assert journal.give_input(client, SID, MID, "a1", "output", {}, "x").verdict == "not_waiting"
    first = journal.give_input(client, SID, MID, "a1", "approval", APPROVE, "yes")
    assert first == journal.InputOutcome("stored", None)  # not paused yet: nothing due
    waits = [("a1", "approval"), ("o1", "output")]
    assert journal.pause(client, SID, MID, 1, waits) == "paused"
    assert client.ttl(keys.active(SID)) == -1, "a paused answer has no timer"
    same = journal.give_input(client, SID, MID, "a1", "approval", {"approved": True}, "yes")
    assert same == journal.InputOutcome("same", None)
    denied = {"approved": False, "reason": "no"}
    assert journal.give_input(client, SID, MID, "a1", "approval", denied, "no").verdict == (
        "settled"
    )
    last = journal.give_input(client, SID, MID, "o1", "output", {"output": 3}, "3")
    assert last == journal.InputOutcome("stored", 2)
    # The web lost between storing and queueing: the client's retry gets the attempt again.
    assert journal.give_input(client, SID, MID, "o1", "output", {"output": 3}, "3") == (
        journal.InputOutcome("same", 2)
    )
    read = journal.read(client, SID, MID)
    assert read is not None and read.paused == keys.PAUSE_RESUMING and read.waits == waits
    assert read.calls["a1"].input == APPROVE and read.calls["o1"].input == {"output": 3}


def test_the_due_attempt_resumes_once_and_fences_the_old_one(client: redis.Redis) -> None:
    record(client, 0, NewCall("a1", "refund", "approval"))
    assert journal.resume(client, SID, MID, 2) is False  # nothing is due
    assert journal.pause(client, SID, MID, 1, [("a1", "approval")]) == "paused"
    assert (
        journal.give_input(client, SID, MID, "a1", "approval", APPROVE, "yes").resume_attempt == 2
    )
    assert journal.resume(client, SID, MID, 3) is False
    assert journal.resume(client, SID, MID, 2) is True
    assert journal.resume(client, SID, MID, 2) is False, "a duplicate job of the attempt"
    assert client.hget(keys.active(SID), keys.ACTIVE_ATTEMPT) == "2"
    assert journal.start_call(client, SID, MID, 1, "a1").status == "fenced"
    assert journal.start_call(client, SID, MID, 2, "a1").status == "ok"
    assert journal.read(client, SID, MID).paused is None  # type: ignore[union-attr]


def test_a_pause_whose_inputs_all_came_goes_on_at_once(client: redis.Redis) -> None:
    record(client, 0, NewCall("o1", "pick", "output"))
    journal.give_input(client, SID, MID, "o1", "output", {"output": "red"}, '"red"')
    assert journal.pause(client, SID, MID, 1, [("o1", "output")]) == "go_on"
    assert journal.pause(client, SID, MID, 2, [("o1", "output")]) == "fenced"
    assert journal.read(client, SID, MID).paused is None  # type: ignore[union-attr]


def test_a_cancel_wakes_a_paused_answer_and_ends_its_waiting(client: redis.Redis) -> None:
    record(client, 0, NewCall("a1", "refund", "approval"))
    assert journal.wake(client, SID, MID) is None, "not paused: the running worker sees the flag"
    journal.pause(client, SID, MID, 1, [("a1", "approval")])
    assert journal.wake(client, SID, MID) == 2
    assert journal.wake(client, SID, MID) == 2, "a retried cancel gets the same attempt"
    assert journal.resume(client, SID, MID, 2) is True
    denied = {"status": "denied", "output": None, "error": None}
    journal.record_result(client, SID, MID, 2, "a1", denied)
    client.delete(keys.active(SID))  # its end released the claim
    late = journal.give_input(client, SID, MID, "a1", "approval", APPROVE, "yes")
    assert late.verdict == "not_waiting"


def test_a_resume_job_says_so_and_a_plain_one_is_as_before(client: redis.Redis) -> None:
    client.delete(keys.JOBS_QUEUED)  # the claim's own job
    job = jobs.enqueue_resume(client, SID, MID, 2)
    assert jobs.Job.loads(job.dumps()) == job and job.resume
    assert "resume" not in jobs.Job(SID, MID).dumps()
    taken = jobs.pop(client, 0.1)
    assert taken is not None and taken.job.resume and taken.job.attempt == 2


def test_a_call_that_runs_at_once_is_recorded_running_with_its_step(client: redis.Redis) -> None:
    record(client, 0, NewCall("c1", "pay", None, runs_now=True), NewCall("c2", "pay", None))
    calls = journal.read(client, SID, MID).calls  # type: ignore[union-attr]
    assert (calls["c1"].status, calls["c1"].attempt) == (journal.RUNNING, 1)
    assert calls["c2"].status == journal.PENDING
    jobs.begin(client, jobs.Job(SID, MID, attempt=2))  # its worker was lost
    assert journal.start_call(client, SID, MID, 2, "c1").status == "running"
    assert journal.start_call(client, SID, MID, 2, "c2").status == "ok"
