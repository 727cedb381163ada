"""The job list (webapp/storage/jobs.py): claims, the queue, leases and taking jobs back.

On a redis-server of this module's own, so that no worker of the shared
stack pops these jobs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.processes import RedisServer, wait_for
from webapp.storage import jobs, keys


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    server = RedisServer(Path(tmp_path_factory.mktemp("jobs-redis"))).start()
    connection = redis.Redis.from_url(server.url, decode_responses=True)
    yield connection
    connection.close()
    server.stop()


@pytest.fixture(autouse=True)
def empty(client: redis.Redis) -> None:
    client.flushdb()


def test_a_session_is_claimed_by_one_message_at_a_time(client: redis.Redis) -> None:
    assert jobs.claim(client, "s1", "m1") == jobs.Claim(None, False)
    assert jobs.claim(client, "s1", "m2") == jobs.Claim("m1", False)
    # Until its job is queued, a claim expires: a POST that died blocks nothing for ever.
    assert 0 < client.ttl(keys.active("s1")) <= jobs.CLAIM_TTL_SECONDS
    jobs.release(client, "s1", "m2")  # not the claim's message: nothing happens
    assert client.hget(keys.active("s1"), keys.ACTIVE_MESSAGE_ID) == "m1"
    jobs.release(client, "s1", "m1")
    # The released claim never reached a final event: the next claim is told.
    assert jobs.claim(client, "s1", "m3") == jobs.Claim(None, True)


def test_a_queued_job_is_popped_once_and_acked(client: redis.Redis) -> None:
    jobs.claim(client, "s1", "m1")
    job = jobs.enqueue(client, "s1", "m1")
    assert client.ttl(keys.active("s1")) == -1, "a queued job's claim lasts until its end"
    assert jobs.queue_depth(client) == (1, 0)
    taken = jobs.pop(client, 0.1)
    assert taken is not None and taken.job == job
    assert jobs.pop(client, 0.1) is None
    assert jobs.queue_depth(client) == (0, 1)
    jobs.lease(client, 10, [taken.raw])
    jobs.ack(client, taken)
    assert jobs.queue_depth(client) == (0, 0) and client.zcard(keys.JOBS_LEASES) == 0


def test_a_malformed_job_is_dropped(client: redis.Redis) -> None:
    client.lpush(keys.JOBS_QUEUED, "not json")
    assert jobs.pop(client, 0.1) is None
    assert jobs.queue_depth(client) == (0, 0)


def test_an_expired_lease_is_taken_back_once_as_the_next_attempt(client: redis.Redis) -> None:
    jobs.enqueue(client, "s1", "m1")
    taken = jobs.pop(client, 0.1)
    assert jobs.lease(client, 0.001, [taken.raw]) == 1
    expired = wait_for(lambda: jobs.expired(client, 10), what="the lease to run out")
    assert expired == [taken.raw]
    retry = jobs.next_attempt(taken.job)
    assert jobs.take_back(client, taken.raw, retry)
    assert not jobs.take_back(client, taken.raw, retry), "a second reaper finds nothing"
    (queued,) = client.lrange(keys.JOBS_QUEUED, 0, -1)
    assert jobs.Job.loads(queued) == retry and retry.attempt == 2
    jobs.renew(client, 10, [taken.raw])  # its old worker renews late ...
    assert client.zcard(keys.JOBS_LEASES) == 0  # ... and leases nothing again


def test_a_live_lease_is_not_taken_back_unless_forced(client: redis.Redis) -> None:
    jobs.enqueue(client, "s1", "m1")
    taken = jobs.pop(client, 0.1)
    jobs.lease(client, 60, [taken.raw])
    assert not jobs.take_back(client, taken.raw, jobs.next_attempt(taken.job))
    assert jobs.take_back(client, taken.raw, None, force=True)  # its own worker gives it up
    assert jobs.queue_depth(client) == (0, 0)


def test_a_processing_job_without_a_lease_is_adopted(client: redis.Redis) -> None:
    """Its worker died between popping it and leasing it."""
    jobs.enqueue(client, "s1", "m1")
    taken = jobs.pop(client, 0.1)
    assert jobs.expired(client, 60) == []
    assert client.zscore(keys.JOBS_LEASES, taken.raw) is not None


def test_a_later_attempt_takes_the_session_over_and_an_older_one_is_stale(
    client: redis.Redis,
) -> None:
    jobs.claim(client, "s1", "m1")
    job = jobs.enqueue(client, "s1", "m1")
    second = jobs.next_attempt(job)
    assert jobs.begin(client, second)
    assert client.hget(keys.active("s1"), keys.ACTIVE_ATTEMPT) == "2"
    assert not jobs.begin(client, job), "attempt 1 is stale once attempt 2 began"
    assert not jobs.begin(client, jobs.Job("s1", "other", 3)), "not the claimed message"


def test_cancels_are_read_for_the_active_message_only(client: redis.Redis) -> None:
    jobs.claim(client, "s1", "m1")
    jobs.claim(client, "s2", "m2")
    running = [jobs.Job("s1", "m1"), jobs.Job("s2", "m2"), jobs.Job("s3", "m3")]
    # s3 has no active hash: its session was deleted, so its job stops too (issue 15).
    assert jobs.cancels_requested(client, running) == [False, False, True]
    assert jobs.request_cancel(client, "s1", "m1")
    assert not jobs.request_cancel(client, "s2", "not-m2")
    assert jobs.cancels_requested(client, running) == [True, False, True]
