"""Statistics over seeds, from the field's libraries: rliable (IQM with stratified-bootstrap 95 % intervals,
probability of improvement), scipy (Wilson intervals for success rates, t intervals for paired changes), pandas
for the per-variant table. Every function takes plain numbers, so that tests can check them on synthetic stores.
"""

import functools

import numpy as np
import pandas as pd
from rliable import library as rly
from scipy import stats

REPS = 5000  # bootstrap resamples: intervals stable to ~0.5 % of their width
SEED = 0  # the bootstrap's random state: a table regenerates identically from the same store


def estimate(scores: dict, func, reps: int | None = None) -> tuple[dict, dict]:
    """rliable's point estimates and stratified-bootstrap 95 % intervals (REPS resamples unless `reps`), reproducible.

    rliable 1.2's stratified bootstraps draw their resample indices from numpy's global generator (`np.random.choice`
    in `update_indices`) whatever `random_state` they are given, so the global generator is seeded here and restored
    afterwards: the same store gives the same intervals in any process, whatever ran before."""
    saved = np.random.get_state()
    np.random.seed(SEED)
    try:
        return rly.get_interval_estimates(scores, func, reps=reps or REPS)
    finally:
        np.random.set_state(saved)


def trimmed_mean(scores: np.ndarray, axis=None) -> np.ndarray:
    """The interquartile mean: scipy's trim_mean(scores, 0.25, axis), which rliable's aggregate_iqm is, step for step
    (the same partition, hence the same numbers), without scipy's per-call argument handling: the bootstrap calls it
    thousands of times, and that handling was 90 % of a report's time."""
    a = np.asarray(scores, dtype=float)
    if axis is None:
        a, axis = a.ravel(), 0
    low = int(0.25 * a.shape[axis])
    high = a.shape[axis] - low
    kept = np.take(np.partition(a, (low, high - 1), axis), range(low, high), axis=axis)
    return kept.mean(axis=axis)


def improvement(x: np.ndarray, y: np.ndarray) -> float:
    """rliable's probability_of_improvement for one task: P(X > Y) + P(X = Y) / 2 over all pairs of runs (what its
    Mann-Whitney U / (n m) counts), without scipy's test machinery per bootstrap resample."""
    x, y = np.asarray(x, dtype=float).reshape(-1, 1), np.asarray(y, dtype=float).reshape(1, -1)
    return float(((x > y) + 0.5 * (x == y)).mean())


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate (scipy's binomtest)."""
    interval = stats.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return interval.low, interval.high


def iqm(values) -> tuple[float, float, float]:
    """Interquartile mean over runs, with rliable's stratified-bootstrap 95 % interval: (IQM, low, high)."""
    scores = np.asarray(values, dtype=float).reshape(-1, 1)
    point, interval = estimate({"x": scores}, lambda s: np.array([trimmed_mean(s)]))
    return float(point["x"][0]), float(interval["x"][0, 0]), float(interval["x"][1, 0])


def iqm_curves(matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of `matrix` (runs x points, e.g. a judged share at each completion count): IQM and its 95 %
    interval, as rliable's sample-efficiency curves compute them."""
    scores = np.asarray(matrix, dtype=float)
    point, interval = estimate({"x": scores}, functools.partial(trimmed_mean, axis=0), reps=REPS // 10)
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
    """P(a run of X needs fewer than a run of Y), ties counting a half: rliable's probability of improvement on the
    negated numbers, with its stratified-bootstrap 95 % interval."""
    pair = (-np.asarray(x, dtype=float).reshape(-1, 1), -np.asarray(y, dtype=float).reshape(-1, 1))
    point, interval = estimate({"xy": pair}, lambda x, y: improvement(x[:, 0], y[:, 0]))
    return float(point["xy"]), float(interval["xy"][0, 0]), float(interval["xy"][1, 0])


def summary(records: list[dict]) -> pd.DataFrame:
    """One row per variant (in the records' order): runs, failures, success rate with its Wilson interval, IQM and
    interval of completions, seconds and plain-loop units to the target, of the pipeline's total wall time, and the
    paired sampled-correct change against the SFT, and what the reward paid the last rollouts minus the judge's exact
    match of them (reward hacking, where the gap is above 0)."""
    rows = []
    for variant, runs in pd.DataFrame(records).groupby("variant", sort=False):
        done = [m for m, failed in zip(runs["metrics"], runs["failed_stage"]) if failed is None]
        met = sum(bool(m.get("target_met")) for m in done)
        row = {"variant": variant, "runs": len(runs), "failed": len(runs) - len(done), "met": met}
        row["met_low"], row["met_high"] = wilson(met, len(runs))
        for name in ("completions_to_target", "seconds_to_target", "units_to_target", "total_s", "total_units"):
            values = [m[name] for m in done if m.get(name) is not None]
            row[name] = iqm(values) if values else None
            row[f"{name}_n"] = len(values)
        pairs = [(m["sampled_correct"], m["sft_sampled_correct"]) for m in done if m.get("sft_sampled_correct")]
        row["correct_change"] = paired_change(*zip(*pairs)) if pairs else None
        gaps = [m["final_reward"] - m["final_judged"] for m in done if "final_reward" in m]
        row["reward_gap"] = iqm(gaps) if gaps else None
        lowest = [m["min_greedy_correct"] for m in done if m.get("min_greedy_correct") is not None]
        row["min_greedy_correct"] = min(lowest, default=None)
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")
