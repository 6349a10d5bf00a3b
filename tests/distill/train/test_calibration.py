"""Temperature scaling and ECE: the fitted temperature undoes a known miscalibration."""

import numpy as np
import pytest

from distill.train.calibration import ece, ece_of_probs, fit_temperature


def _overconfident(n=4000, k=5, true_t=3.0, seed=0):
    """Labels drawn from softmax(z); the model reports z * true_t (too sure by a factor true_t)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 1.5
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    targets = np.array([rng.choice(k, p=row) for row in p])
    return z * true_t, targets


def test_fitted_temperature_recovers_the_miscalibration_and_lowers_ece():
    logits, targets = _overconfident()
    t = fit_temperature(logits, targets)
    assert t == pytest.approx(3.0, rel=0.1)
    assert ece(logits, targets, t) < ece(logits, targets, 1.0) / 2


def test_ece_of_perfectly_calibrated_answers_is_small_and_of_wrong_sure_ones_large():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.2, 1.0, 20000)
    assert ece_of_probs(conf, rng.uniform(size=conf.size) < conf) < 0.02
    assert ece_of_probs([0.99] * 100, [False] * 100) == pytest.approx(0.99)
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 1.0
