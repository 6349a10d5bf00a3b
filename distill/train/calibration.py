"""Calibration for classifier students: temperature scaling and expected calibration error.

Fitted on the validation split only (never the dev split): one scalar T divides the head's
logits so that the softmax's probability means what it says, which is what the runtime's
escalation threshold compares against.
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 15


def _nll(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(targets)), targets].mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """The T in [lo, hi] minimising the negative log-likelihood (a log-spaced grid, then a
    golden-section refinement; the NLL is unimodal in log T)."""
    logits, targets = np.asarray(logits, dtype=np.float64), np.asarray(targets, dtype=np.int64)
    if len(targets) == 0:
        return 1.0
    grid = np.exp(np.linspace(np.log(lo), np.log(hi), 60))
    values = [_nll(logits, targets, t) for t in grid]
    i = int(np.argmin(values))
    a, b = np.log(grid[max(0, i - 1)]), np.log(grid[min(len(grid) - 1, i + 1)])
    g = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        c, d = b - g * (b - a), a + g * (b - a)
        if _nll(logits, targets, np.exp(c)) < _nll(logits, targets, np.exp(d)):
            b = d
        else:
            a = c
    return float(np.exp((a + b) / 2))


def ece(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top label's probability (equal-width bins)."""
    logits, targets = np.asarray(logits, dtype=np.float64), np.asarray(targets)
    if len(targets) == 0:
        return 0.0
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return ece_of_probs(p.max(axis=1), p.argmax(axis=1) == targets, bins)


def ece_of_probs(confidences: list[float], correct: list[bool], bins: int = ECE_BINS) -> float:
    """ECE from predictions already made (eval: each answer's confidence and whether it was right)."""
    conf, ok = np.asarray(confidences, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if len(conf) == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            total += inside.mean() * abs(conf[inside].mean() - ok[inside].mean())
    return float(total)


def fit_logistic(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, l2: float = 1e-5,
                 steps: int = 50) -> np.ndarray:
    """Weighted logistic regression by Newton's method (the last column of `x` is the bias,
    left unpenalised): the retriever's abstention probability, fitted on validation rows only."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum() if w.sum() > 0 else w
    penalty = np.full(x.shape[1], l2)
    penalty[-1] = 0.0
    beta = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ beta, -60, 60)))
        grad = x.T @ (w * (p - y)) + penalty * beta
        hess = (x * (w * p * (1 - p))[:, None]).T @ x + np.diag(penalty) + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta
