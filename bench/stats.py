"""Statistics over seeds: rliable (IQM and probability of improvement, stratified-bootstrap 95 % intervals), scipy
(Wilson intervals of success rates, t intervals of paired changes), pandas (the per-variant frame). Every function
takes plain numbers, so that tests can check them on synthetic stores.
"""

import functools
import math

import numpy as np
import pandas as pd
from rliable import library as rly
from scipy import stats

REPS = 5000  # bootstrap resamples: intervals stable to ~0.5 % of their width
SEED = 0  # the bootstrap's random state: a table regenerates identically from the same store


def estimate(scores: dict, func, reps: int | None = None) -> tuple[dict, dict]:
    """rliable's point estimates and 95 % intervals, reproducible: rliable 1.2 resamples with numpy's global generator
    whatever `random_state` it is given, so that generator is seeded here and restored afterwards."""
    saved = np.random.get_state()
    np.random.seed(SEED)
    try:
        return rly.get_interval_estimates(scores, func, reps=reps or REPS)
    finally:
        np.random.set_state(saved)


def trimmed_mean(scores: np.ndarray, axis=None) -> np.ndarray:
    """The interquartile mean: scipy's trim_mean(scores, 0.25, axis), which rliable's aggregate_iqm is, step for step,
    without scipy's per-call argument handling (90 % of a report's time: the bootstrap calls it thousands of times)."""
    a = np.asarray(scores, dtype=float)
    if axis is None:
        a, axis = a.ravel(), 0
    low = int(0.25 * a.shape[axis])
    high = a.shape[axis] - low
    return np.take(np.partition(a, (low, high - 1), axis), range(low, high), axis=axis).mean(axis=axis)


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate (scipy's binomtest)."""
    interval = stats.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return interval.low, interval.high


def iqm(values) -> tuple[float, float, float]:
    """Interquartile mean over runs with its bootstrap 95 % interval: (IQM, low, high)."""
    point, low, high = iqm_curves(np.asarray(values, dtype=float).reshape(-1, 1), reps=REPS)
    return float(point[0]), float(low[0]), float(high[0])


def iqm_curves(matrix, reps: int = REPS // 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of `matrix` (runs x points): the IQM and its 95 % interval, as rliable's sample-efficiency curves."""
    point, interval = estimate({"x": np.asarray(matrix, dtype=float)}, functools.partial(trimmed_mean, axis=0), reps)
    return point["x"], interval["x"][0], interval["x"][1]


def paired_change(after, before) -> tuple[float, float, float]:
    """Mean of the per-seed differences after - before, with its 95 % t interval (NaN bounds for one seed)."""
    differences = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    if len(differences) < 2:
        return float(differences.mean()), float("nan"), float("nan")
    if np.ptp(differences) == 0:  # no spread: the t interval is the point (scipy would warn and return NaN)
        return (float(differences[0]),) * 3
    interval = stats.ttest_1samp(differences, 0.0).confidence_interval(0.95)
    return float(differences.mean()), float(interval.low), float(interval.high)


def fewer_is_better(x, y) -> tuple[float, float, float]:
    """P(a run of X needs fewer than a run of Y), ties counting a half, with its bootstrap 95 % interval: rliable's
    probability_of_improvement on the negated numbers, without scipy's Mann-Whitney machinery per resample."""

    def improvement(x, y):  # P(X > Y) + P(X = Y) / 2 over all pairs of runs
        x, y = x.reshape(-1, 1), y.reshape(1, -1)
        return float(((x > y) + 0.5 * (x == y)).mean())

    pair = (-np.asarray(x, dtype=float).reshape(-1, 1), -np.asarray(y, dtype=float).reshape(-1, 1))
    point, interval = estimate({"xy": pair}, improvement)
    return float(point["xy"]), float(interval["xy"][0, 0]), float(interval["xy"][1, 0])


def summary(records: list[dict]) -> pd.DataFrame:
    """One row per variant, in the records' order: runs, failures, runs meeting every target with their Wilson
    interval, the IQM of completions, seconds and plain-loop units to the target and of the pipeline's wall time, the
    paired sampled-correct change against the SFT, the lowest greedy correct share in training, the reward minus the
    judge's exact match of the last rollouts (reward hacking where above 0), and each RL run's completions to the
    target (`needed`; inf: never reached it)."""
    rows = []
    for variant, runs in pd.DataFrame(records).groupby("variant", sort=False):
        done = [m for m, failed in zip(runs["metrics"], runs["failed_stage"]) if failed is None]
        met = None  # a study of stages short of the RL stage has no targets
        if any("target_met" in m for m in done):
            met = sum(bool(m.get("target_met")) for m in done)
        row = {"variant": variant, "runs": len(runs), "failed": len(runs) - len(done), "met": met}
        row["met_low"], row["met_high"] = (None, None) if met is None else wilson(met, len(runs))
        for name in ("completions_to_target", "seconds_to_target", "units_to_target", "total_s", "total_units"):
            values = [m[name] for m in done if m.get(name) is not None]
            row[name], row[f"{name}_n"] = iqm(values) if values else None, len(values)
        pairs = [(m["sampled_correct"], m["sft_sampled_correct"]) for m in done if m.get("sft_sampled_correct")]
        row["correct_change"] = paired_change(*zip(*pairs)) if pairs else None
        gaps = [m["final_reward"] - m["final_judged"] for m in done if "final_reward" in m]
        row["reward_gap"] = iqm(gaps) if gaps else None
        for name in ("min_greedy_correct", "sft_own_correct"):  # the lowest over the runs
            row[name] = min((m[name] for m in done if m.get(name) is not None), default=None)
        row["needed"] = [m["completions_to_target"] or math.inf for m in done if "completions" in m]
        rows.append(row)
    return pd.DataFrame(rows, dtype=object).set_index("variant")  # None stays None (not NaN) in every column
