"""The soak's rule (chaos.soak): a figure grows without bound when the last third's median exceeds the first
third's by more than its tolerance and the slope is positive. Pure: samples made by hand."""

from __future__ import annotations

import pytest

from chaos.soak import Sample, analyse, main, slope, trend


def _points(values: list[float], step: float = 5.0) -> list[tuple[float, float]]:
    return [(i * step, v) for i, v in enumerate(values)]


def test_slope_is_least_squares_per_second() -> None:
    assert slope(_points([0, 5, 10, 15])) == pytest.approx(1.0)
    assert slope(_points([7, 7, 7])) == 0.0
    assert slope([(0.0, 1.0)]) == 0.0


def test_a_plateau_after_a_rise_is_bounded_and_a_steady_climb_is_not() -> None:
    plateau = trend(_points([100, 101, 100, 101, 100, 101, 101, 100, 101]), 0.10, 8)
    assert not plateau.growing and (plateau.start, plateau.end, plateau.max) == (100, 101, 101)
    climb = trend(_points([100.0 + 3 * i for i in range(30)]), 0.10, 8)
    assert climb.growing and climb.slope_per_10min == pytest.approx(3 / 5 * 600)
    # Back down after a burst: the last third is no higher than the first.
    assert not trend(_points([10, 10, 10, 40, 40, 40, 10, 9, 10]), 0.0, 2).growing
    # Within the floor: a few descriptors more is noise, not a leak.
    assert not trend(_points([30, 30, 30, 31, 32, 32, 33, 33, 33]), 0.10, 4).growing


def _sample(t: float, rss: int, fds: int = 30, conns: int = 4, backlog: int = 5) -> Sample:
    return Sample(t=t, rss_kib=rss, fds=fds, db_conns=conns, cpu_s=0.0, backlog=backlog, done=0, posted=0)


def test_analyse_leaves_the_warm_up_out_and_names_each_figure() -> None:
    # A large rise during the warm-up, flat afterwards: bounded.
    samples = [_sample(t, 50_000 + 1_000 * t) for t in range(0, 60, 5)]
    samples += [_sample(t, 110_000 + (t % 10)) for t in range(60, 300, 5)]
    trends = analyse(samples, warmup=60, rate=10)
    assert set(trends) == {"rss_kib", "fds", "db_conns", "events", "backlog"}
    assert not any(t.growing for t in trends.values())
    leaking = [_sample(t, 100_000, conns=4 + int(t // 30)) for t in range(0, 300, 5)]
    assert analyse(leaking, warmup=0, rate=10)["db_conns"].growing
    assert analyse(samples[:3], warmup=0, rate=10) == {}  # too few samples to judge


def test_bad_usage_is_refused() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--minutes", "0"])
    assert exited.value.code == 2
