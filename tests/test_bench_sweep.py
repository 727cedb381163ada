"""The load sweep's judgement and chart (bench/knee.py, bench/chart.py), on steps written by hand.

No process runs here and nothing is timed: the sweep itself is a benchmark
(`python -m bench --sweep`). What is tested is the rule that turns steps
into a knee, when the sweep stops loading a system, and that the chart is a
PNG drawn from the steps.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.knee import (
    MAX_P99_MS,
    NCHAN,
    RELAY,
    SSE,
    Knee,
    Step,
    error_notes,
    knee,
    knee_table,
    past_knee,
    ratio_text,
    steps_table,
)
from bench.sweep import RATES, SweepPlan


def steps(*p99s: float | None, lost_at: tuple[int, ...] = (), system: str = RELAY) -> list[Step]:
    """One step per rate of RATES, with these p99s; `lost_at`: rates that lost a delivery."""
    return [
        Step(system, SSE, rate, p99_ms=p99, lost=1 if rate in lost_at else 0)
        for rate, p99 in zip(RATES, p99s, strict=False)
    ]


def test_the_knee_is_the_highest_rate_within_the_bound() -> None:
    found = knee(steps(3.0, 8.0, 24.0, 60.0, 400.0))
    assert found == Knee(5000, at_least=False)
    assert found.text(1000) == "5,000"


def test_the_bound_is_inclusive_and_a_step_without_a_p99_fails() -> None:
    assert Step(RELAY, SSE, 1000, p99_ms=MAX_P99_MS).passed
    assert not Step(RELAY, SSE, 1000, p99_ms=MAX_P99_MS + 0.01).passed
    assert not Step(RELAY, SSE, 1000, p99_ms=None).passed  # nothing arrived


def test_a_step_that_lost_a_delivery_or_could_not_run_is_past_the_knee() -> None:
    assert knee(steps(3.0, 4.0, 5.0, lost_at=(5000,))).rate == 2000
    failed = Step(RELAY, SSE, 5000, p99_ms=1.0, error="RuntimeError('nginx exited')")
    assert knee([*steps(3.0, 4.0), failed]).rate == 2000


def test_a_failure_below_the_knee_is_listed_and_does_not_lower_it() -> None:
    found = knee(steps(3.0, 90.0, 12.0, 70.0, 80.0))
    assert found.rate == 5000
    assert found.failed_below == (2000,)


def test_the_knee_is_a_lower_bound_when_nothing_above_it_failed_for_the_server() -> None:
    assert knee(steps(1.0, 1.0, 1.0, 1.0, 1.0, 2.0)) == Knee(40000, at_least=True)
    bound = steps(1.0, 1.0, 1.0, 1.0, 1.0, 90.0)
    bound[-1].client_percent = 97.0  # the load client had a whole core: it was the limit
    assert knee(bound) == Knee(20000, at_least=True)
    assert knee(bound).text(1000) == ">= 20,000"
    bound[-1].client_percent, bound[-1].load_core_percent = 40.0, 98.0  # its core was full
    assert knee(bound) == Knee(20000, at_least=True)
    bound[-1].load_core_percent = 60.0  # the load kept up: the server was the limit
    assert knee(bound) == Knee(20000, at_least=False)


def test_no_rate_within_the_bound_has_no_knee() -> None:
    found = knee(steps(40.0, 90.0))
    assert found == Knee(None, at_least=False)
    assert found.text(1000) == "< 1,000"


def test_the_sweep_stops_a_system_after_two_failed_steps_in_a_row() -> None:
    assert not past_knee(steps(3.0))
    assert not past_knee(steps(3.0, 90.0))
    assert not past_knee(steps(90.0, 3.0, 90.0))
    assert past_knee(steps(3.0, 90.0, 95.0))


def test_relays_knee_as_a_multiple_of_nchans_says_where_a_knee_is_a_bound() -> None:
    assert ratio_text(Knee(5000, False), Knee(20000, False), 1000) == "0.25x"
    assert ratio_text(Knee(5000, False), Knee(40000, True), 1000) == "<= 0.12x"
    assert ratio_text(Knee(None, False), Knee(20000, False), 1000) == "< 0.05x"


def test_cpu_per_operation_by_role() -> None:
    step = Step(RELAY, SSE, 1000, deliveries=10_000, deltas=1_000, polls=0)
    step.cpu = {"web": 0.5, "worker": 0.2, "redis": 0.1}
    assert step.per("delivery") == pytest.approx({"web": 50.0, "worker": 20.0, "redis": 10.0})
    assert step.per("delta") == pytest.approx({"web": 500.0, "worker": 200.0, "redis": 100.0})
    assert step.per("poll") == {"web": None, "worker": None, "redis": None}
    nginx = Step(NCHAN, SSE, 1000, deliveries=10_000, cpu={"web": 0.1, "redis": 0.1})
    assert nginx.per("delivery")["worker"] is None


def test_the_tables_show_both_systems_and_each_knee() -> None:
    both = steps(3.0, 8.0, 60.0, 70.0) + steps(1.0, 1.0, 1.0, 1.0, 2.0, 3.0, system=NCHAN)
    rows = steps_table(both).splitlines()
    assert len(rows) == 2 + len(both)
    knees = knee_table(both)
    assert ">= 40,000" in knees and "<= 0.05x" in knees


def test_every_rate_of_the_sweep_is_the_load_it_is_named_for() -> None:
    plan = SweepPlan()
    for rate in plan.rates:
        load = plan.load(rate)
        assert load.per_second == pytest.approx(rate)
        assert load.count == pytest.approx(rate / load.clients * plan.step_seconds)
    quick = SweepPlan.quick()
    assert [quick.load(rate).per_second for rate in quick.rates] == list(quick.rates)


def test_the_chart_is_a_png_of_both_systems(tmp_path: Path) -> None:
    from matplotlib.image import imread

    from bench.chart import write_chart

    drawn = steps(3.0, 8.0, 60.0, None, lost_at=(5000,)) + steps(1.0, 2.0, 3.0, system=NCHAN)
    path = write_chart(drawn, tmp_path / "docs" / "sweep.png", "test sweep")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = imread(path).shape
    assert (width, height) == (1100, 460)


def test_the_printed_sweep_names_the_cpu_and_how_busy_the_cores_were() -> None:
    from bench.sweep import chart_title, text

    both = steps(3.0, 8.0) + steps(1.0, 2.0, system=NCHAN)
    both[0].others_percent, both[1].load_others_percent = 3.0, 40.0
    meta = {"cpu_model": "AMD EPYC", "cpus": 2, "pinned": "pinned: on CPU 0", "commit": "abc1234"}
    printed = text(SweepPlan(), both, meta, "docs/performance-sweep.png")
    assert "CPU: AMD EPYC" in printed
    assert "up to 3 % of the system's core and 40 % of the load's" in printed
    assert printed.endswith("chart: docs/performance-sweep.png")
    assert "relay abc1234 and Nchan-Redis on one pinned core (AMD EPYC)" in chart_title(
        SweepPlan(), both, meta
    )


def test_a_step_failed_by_an_error_is_starred_and_its_error_printed_under_the_table() -> None:
    failed = Step(RELAY, SSE, 20000, p99_ms=3.0, error="Traceback...\nReadTimeout: timed out")
    table = steps_table([*steps(3.0), failed])
    assert "no *" in table
    assert error_notes([failed]) == ["* relay SSE 20,000/s: ReadTimeout: timed out"]
