#!/usr/bin/env python3
"""Reference figures for the drift statistics (src/drift/stats.rs), computed
with scipy and numpy, independent of the crate. tests/drift_reference.rs
checks the crate's figures against them within 1e-9.

    pip install scipy numpy
    python3 scripts/drift_reference.py > tests/data/drift_reference.json
"""
import json
import math

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

PSI_SMOOTHING = 0.5  # the crate's drift::PSI_SMOOTHING


def psi(expected, actual):
    e = np.asarray(expected, float) + PSI_SMOOTHING
    a = np.asarray(actual, float) + PSI_SMOOTHING
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def chi2(expected, actual):
    table = np.array([expected, actual], float)
    table = table[:, table.sum(axis=0) > 0]  # categories neither side produced
    res = stats.chi2_contingency(table, correction=False)
    return {"statistic": float(res.statistic), "dof": int(res.dof), "p_value": float(res.pvalue)}


CATEGORICAL = [
    # (name, primary counts, shadow counts), same category order
    ("equal", [50, 30, 20], [50, 30, 20]),
    ("shifted", [50, 30, 20], [40, 30, 30]),
    ("large shift", [90, 5, 5], [30, 35, 35]),
    ("a category only the shadow produced", [60, 40, 0], [50, 30, 20]),
    ("a category neither produced", [10, 0, 25, 7], [12, 0, 20, 9]),
    ("iris labels", [50, 50, 50], [50, 47, 53]),
]


def rng_sample(seed, n, loc, scale):
    # A fixed, reproducible sample (numpy's generator, written to the file).
    g = np.random.default_rng(seed)
    return [round(float(x), 6) for x in g.normal(loc, scale, n)]


NUMERIC = [
    ("small, shifted (exact)", [0.1, 0.4, 0.35, 0.8, 0.55, 0.62, 0.2, 0.91],
     [0.3, 0.7, 0.65, 0.99, 0.85, 0.72, 0.5]),
    ("normal 60 vs 70, shifted by 0.5 (exact)", rng_sample(1, 60, 0.0, 1.0), rng_sample(2, 70, 0.5, 1.0)),
    ("normal 100 vs 100, same (exact)", rng_sample(3, 100, 0.0, 1.0), rng_sample(4, 100, 0.0, 1.0)),
    ("normal 300 vs 250, shifted by 0.3 (asymptotic)", rng_sample(5, 300, 0.0, 1.0), rng_sample(6, 250, 0.3, 1.0)),
    ("probabilities 400 vs 400, scaled (asymptotic)", [abs(x) % 1 for x in rng_sample(7, 400, 0.5, 0.2)],
     [abs(x) % 1 for x in rng_sample(8, 400, 0.6, 0.25)]),
]

KS_EXACT_MAX = 10_000  # the crate's drift::KS_EXACT_MAX


def ks(expected, actual):
    n, m = len(expected), len(actual)
    exact = n * m <= KS_EXACT_MAX
    if exact:
        res = stats.ks_2samp(expected, actual, method="exact")
        p = float(res.pvalue)
    else:
        res = stats.ks_2samp(expected, actual, method="asymp")
        en = n * m / (n + m)
        # The limiting Kolmogorov distribution (ks_2samp's "asymp" evaluates
        # kstwo at round(en) instead; see the crate's docs).
        p = float(stats.kstwobign.sf(math.sqrt(en) * res.statistic))
    return {"statistic": float(res.statistic), "p_value": p, "exact": exact}


out = {
    "psi_smoothing": PSI_SMOOTHING,
    "categorical": [
        {
            "name": name,
            "expected": e,
            "actual": a,
            "psi": psi(e, a),
            "jensen_shannon": float(jensenshannon(e, a)),
            "chi_square": chi2(e, a),
        }
        for name, e, a in CATEGORICAL
    ],
    "numeric": [
        {
            "name": name,
            "expected": e,
            "actual": a,
            "ks": ks(e, a),
            "wasserstein": float(stats.wasserstein_distance(e, a)),
        }
        for name, e, a in NUMERIC
    ],
    "versions": {"scipy": __import__("scipy").__version__, "numpy": np.__version__},
}
print(json.dumps(out, indent=1))
