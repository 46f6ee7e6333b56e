"""IQA agreement metrics (scipy): SRCC, PLCC raw and after the 4-parameter logistic fit, KRCC, RMSE."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize, stats


def logistic4(x, b1, b2, b3, b4):
    """VQEG's 4-parameter logistic: (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2."""
    with np.errstate(over="ignore"):
        return (b1 - b2) / (1.0 + np.exp(-(x - b3) / (np.abs(b4) + 1e-12))) + b2


def fit_logistic(pred: np.ndarray, mos: np.ndarray) -> np.ndarray:
    """pred mapped onto the MOS scale by the fitted logistic (identity-like start, monotone)."""
    if pred.size <= 4:  # four parameters need at least five points; report the raw PLCC then
        return pred.copy()
    p0 = [mos.max(), mos.min(), float(np.mean(pred)), float(np.std(pred)) or 1.0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            params, _ = optimize.curve_fit(logistic4, pred, mos, p0=p0, maxfev=20000)
        except (RuntimeError, ValueError, TypeError, optimize.OptimizeWarning):
            return pred.copy()
    return logistic4(pred, *params)


def iqa_metrics(pred, mos) -> dict[str, float]:
    pred = np.asarray(pred, dtype=np.float64)
    mos = np.asarray(mos, dtype=np.float64)
    if pred.shape != mos.shape or pred.size < 3:
        raise ValueError(f"need >= 3 paired scores, got {pred.shape} and {mos.shape}")
    fitted = fit_logistic(pred, mos)
    return {
        "n": int(pred.size),
        "srcc": float(stats.spearmanr(pred, mos)[0]),
        "plcc": float(stats.pearsonr(pred, mos)[0]),
        "plcc_logistic": float(stats.pearsonr(fitted, mos)[0]),
        "krcc": float(stats.kendalltau(pred, mos)[0]),
        "rmse": float(np.sqrt(np.mean((pred - mos) ** 2))),
        "rmse_logistic": float(np.sqrt(np.mean((fitted - mos) ** 2))),
    }


def bootstrap_ci(pred, mos, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
                 ) -> dict[str, dict[str, float]]:
    """SRCC, PLCC, KRCC and RMSE with percentile bootstrap confidence intervals (images resampled with
    replacement, pairs kept together; scipy.stats.bootstrap): {metric: {value, low, high}}."""
    pred = np.asarray(pred, dtype=np.float64)
    mos = np.asarray(mos, dtype=np.float64)
    fns = {"srcc": lambda p, m: stats.spearmanr(p, m)[0], "plcc": lambda p, m: stats.pearsonr(p, m)[0],
           "krcc": lambda p, m: stats.kendalltau(p, m)[0], "rmse": lambda p, m: np.sqrt(np.mean((p - m) ** 2))}
    out = {}
    for name, fn in fns.items():
        res = stats.bootstrap((pred, mos), fn, paired=True, vectorized=False, n_resamples=n_resamples,
                              confidence_level=confidence, method="percentile", random_state=seed)
        out[name] = {"value": float(fn(pred, mos)), "low": float(res.confidence_interval.low),
                     "high": float(res.confidence_interval.high)}
    return out
