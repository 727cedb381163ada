"""The load sweep's chart: p99 latency against delivery rate, relay beside Nchan-Redis (PNG).

One panel per transport (SSE, long-poll), both axes logarithmic, one line
per system, the knee's bound (knee.MAX_P99_MS) drawn across. The p99 is
the one the knee is judged on (knee.py: once every answer streams). A step that
lost deliveries is marked with a cross: its p99 is of what did arrive, so
it can sit under the bound and still be past the knee. A ring marks a
step the load, not the server, limited (`load_bound`, knee.py). Steps with
nothing delivered have no p99 and are left out.

matplotlib (requirements-dev.txt: the bench's, never the app's) draws on
its Agg canvas through `Figure` alone, without pyplot's global state, so no
display or backend setting is needed.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from bench.knee import MAX_P99_MS, NCHAN, RELAY, TRANSPORTS, Step, of

STYLE = {RELAY: {"color": "#c2410c", "marker": "o"}, NCHAN: {"color": "#1d4ed8", "marker": "s"}}


def _rate_label(rate: float) -> str:
    return f"{rate / 1000:g}k" if rate >= 1000 else f"{rate:g}"


def _marks(axes: object, steps: list[Step], label: str, **style: object) -> None:
    """Rings or crosses over the steps that need a second look."""
    if steps:
        xs, ys = [s.rate for s in steps], [s.p99_ms for s in steps]
        axes.scatter(xs, ys, label=label, zorder=3, **style)


def _panel(axes: object, steps: list[Step], transport: str) -> None:
    rates = sorted({s.rate for s in steps})
    for system, style in STYLE.items():
        drawn = [s for s in of(steps, system, transport) if s.p99_ms is not None]
        drawn.sort(key=lambda s: s.rate)
        if not drawn:
            continue
        axes.plot([s.rate for s in drawn], [s.p99_ms for s in drawn], label=system, **style)
        lost, bound = [s for s in drawn if s.lost], [s for s in drawn if s.load_bound]
        _marks(axes, lost, f"{system}: deliveries lost", marker="x", s=90, color="black")
        _marks(
            axes,
            bound,
            f"{system}: load-bound",
            s=160,
            facecolors="none",
            edgecolors="black",
        )
    axes.axhline(MAX_P99_MS, color="grey", linestyle="--", label=f"p99 bound {MAX_P99_MS:g} ms")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.xaxis.set_major_locator(FixedLocator(rates))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xticklabels([_rate_label(r) for r in rates])
    if rates:  # the same span in both panels, whichever rates each reached
        axes.set_xlim(rates[0] / 1.3, rates[-1] * 1.3)
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.set_title(transport)
    axes.set_xlabel("deliveries per second")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize="small")


def write_chart(steps: list[Step], path: Path, title: str) -> Path:
    """Draw `steps` into a PNG at `path` (its folder is made) and return the path."""
    figure = Figure(figsize=(11, 4.6), layout="constrained")
    panels = figure.subplots(1, len(TRANSPORTS), sharey=True)
    for axes, transport in zip(panels, TRANSPORTS, strict=True):
        _panel(axes, steps, transport)
    panels[0].set_ylabel("p99 latency once every answer streams (ms)")
    figure.suptitle(title, fontsize="medium")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
