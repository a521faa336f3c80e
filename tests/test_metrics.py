"""dlcore.metrics against scikit-learn on random labels, every averaging mode."""
import warnings

import numpy as np
import pytest

from dlcore import metrics
from helpers import requires_sklearn


AVERAGES = ["micro", "macro", "weighted", None]


def _random_labels(seed, k, n):
    rng = np.random.default_rng(seed)
    return rng.integers(0, k, n), rng.integers(0, k, n)


def _sk(name, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # UndefinedMetricWarning for 0/0 (value 0)
        from sklearn import metrics as skm

        return getattr(skm, name)(*args, **kwargs)


# One test per averaging mode, looping over random label sets (1 to 6 classes, 1 to 40
# samples, absent classes included); the message names the seed of a failing set.
@requires_sklearn
@pytest.mark.parametrize("average", AVERAGES)
def test_scores_match_sklearn_multiclass(average):
    for seed in range(20):
        k = 1 + seed % 6
        y_true, y_pred = _random_labels(seed, k, 1 + (seed * 7) % 40)
        where = f"seed {seed}"
        for name in ("precision_score", "recall_score", "f1_score"):
            np.testing.assert_allclose(getattr(metrics, name)(y_true, y_pred, average=average),
                                       _sk(name, y_true, y_pred, average=average), err_msg=f"{name}, {where}")
        for beta in (0.5, 2.0):
            np.testing.assert_allclose(metrics.fbeta_score(y_true, y_pred, beta=beta, average=average),
                                       _sk("fbeta_score", y_true, y_pred, beta=beta, average=average), err_msg=where)
        assert metrics.accuracy_score(y_true, y_pred) == pytest.approx(_sk("accuracy_score", y_true, y_pred)), where
        np.testing.assert_array_equal(metrics.confusion_matrix(y_true, y_pred), _sk("confusion_matrix", y_true, y_pred),
                                      err_msg=where)


@requires_sklearn
@pytest.mark.parametrize("pos_label", [0, 1])
def test_binary_average_matches_sklearn(pos_label):
    for seed in range(15):
        y_true, y_pred = _random_labels(seed, 2, 1 + seed % 12)
        for name in ("precision_score", "recall_score", "f1_score"):
            assert getattr(metrics, name)(y_true, y_pred, pos_label=pos_label) == pytest.approx(
                _sk(name, y_true, y_pred, pos_label=pos_label)), f"{name}, seed {seed}"
        assert metrics.fbeta_score(y_true, y_pred, beta=2, pos_label=pos_label) == pytest.approx(
            _sk("fbeta_score", y_true, y_pred, beta=2, pos_label=pos_label)), f"seed {seed}"


def test_hand_computed_binary_case_and_zero_division():
    y_true = [1, 1, 1, 0, 0]
    y_pred = [1, 0, 1, 1, 0]       # TP=2, FN=1, FP=1, TN=1
    assert metrics.precision_score(y_true, y_pred) == pytest.approx(2 / 3)
    assert metrics.recall_score(y_true, y_pred) == pytest.approx(2 / 3)
    assert metrics.f1_score(y_true, y_pred) == pytest.approx(2 / 3)
    np.testing.assert_array_equal(metrics.confusion_matrix(y_true, y_pred), [[1, 1], [1, 2]])
    # nothing predicted positive: precision 0/0 -> 0, as scikit-learn
    assert metrics.precision_score([1, 0], [0, 0]) == 0.0
    assert metrics.f1_score([0, 0], [0, 0]) == 0.0
    assert metrics.f1_score([0, 0], [0, 0], zero_division=1.0) == 1.0


@requires_sklearn
def test_string_labels_and_labels_argument():
    y_true = ["cat", "dog", "dog", "cat"]
    y_pred = ["cat", "dog", "cat", "cat"]
    assert metrics.precision_score(y_true, y_pred, pos_label="dog") == pytest.approx(
        _sk("precision_score", y_true, y_pred, pos_label="dog"))
    cm = metrics.confusion_matrix([0, 1, 2, 2], [0, 2, 2, 1], labels=[2, 0])
    np.testing.assert_array_equal(cm, _sk("confusion_matrix", [0, 1, 2, 2], [0, 2, 2, 1], labels=[2, 0]))


def test_errors():
    with pytest.raises(ValueError, match="multiclass"):
        metrics.precision_score([0, 1, 2], [0, 1, 1])
    with pytest.raises(ValueError, match="pos_label"):
        metrics.recall_score([0, 2, 2], [0, 2, 0])
    with pytest.raises(ValueError, match="average"):
        metrics.f1_score([0, 1], [0, 1], average="samples")
    with pytest.raises(ValueError, match="as many samples"):
        metrics.accuracy_score([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="1-D"):
        metrics.confusion_matrix([[0, 1]], [[0, 1]])
