"""Classification metrics with scikit-learn's definitions and results.

For one class c, counting over the samples::

    TP_c = #(true = c and pred = c)     FP_c = #(true != c and pred = c)
    FN_c = #(true = c and pred != c)

    precision_c = TP_c / (TP_c + FP_c)          recall_c = TP_c / (TP_c + FN_c)
    F_beta,c    = (1 + beta^2) TP_c / ((1 + beta^2) TP_c + beta^2 FN_c + FP_c)

(F_beta is the weighted harmonic mean of precision and recall; beta > 1 favours
recall; F1 is beta = 1.) A ratio whose denominator is 0 is defined as 0, scikit-learn's
``zero_division`` default. ``average`` turns per-class scores into one number:

* ``"binary"``   -- only the class ``pos_label`` (labels must have at most two values);
* ``"micro"``    -- pool TP, FP, FN over all classes first (for single-label multiclass
  data micro precision = micro recall = accuracy);
* ``"macro"``    -- unweighted mean of the per-class scores;
* ``"weighted"`` -- mean weighted by each class's support (its number of true samples);
* ``None``       -- the per-class scores as an array, in sorted label order.

The classes are the sorted union of the labels found in ``y_true`` and ``y_pred``.
"""
import numpy as np

__all__ = [
    "accuracy_score",
    "classification_counts",
    "confusion_matrix",
    "f1_score",
    "fbeta_score",
    "precision_score",
    "recall_score",
]

_AVERAGES = ("binary", "micro", "macro", "weighted", None)


def _check_pair(y_true, y_pred):
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim != 1 or y_pred.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-D arrays of labels, got shapes {y_true.shape} and {y_pred.shape}")
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_pred must have as many samples as y_true ({y_true.shape[0]}), got {y_pred.shape[0]}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        # class labels, as scikit-learn requires: floats only when they are whole numbers
        if y.dtype.kind == "c":
            raise ValueError(f"{name} must hold class labels (ints, bools, strings or whole numbers), "
                             f"got dtype {y.dtype}")
        if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
            raise ValueError(f"{name} must hold class labels (ints, bools, strings or whole numbers), "
                             f"got {y[np.argmax(np.mod(y, 1) != 0)]}")
    return y_true, y_pred


def accuracy_score(y_true, y_pred, normalize=True):
    """Fraction of exactly right predictions (their count with ``normalize=False``)."""
    y_true, y_pred = _check_pair(y_true, y_pred)
    if not y_true.size:  # as scikit-learn: the accuracy of nothing is undefined
        raise ValueError("y_true and y_pred are empty: accuracy needs at least one sample")
    correct = y_true == y_pred
    if not normalize:
        return int(correct.sum())
    return float(correct.mean())


def confusion_matrix(y_true, y_pred, labels=None):
    """Counts ``C[i, j]`` of samples whose true class is ``labels[i]`` and prediction ``labels[j]``.

    Rows are the true class and columns the predicted class, as scikit-learn's. The
    notes' table (rows "predicted", columns "real") is the transpose of this matrix: for
    two classes ``[neg, pos]`` here ``C = [[TN, FP], [FN, TP]]``.

    Args:
        labels: the classes and their order (default: the sorted union of both arrays);
            samples whose true or predicted label is not listed are not counted.

    Returns:
        int64 array ``(K, K)``.
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    if labels is None:
        labels = np.union1d(y_true, y_pred)
    else:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(f"labels must be a non-empty 1-D list of classes, got {labels!r}")
        if len(np.unique(labels)) != len(labels):
            raise ValueError(f"labels must not repeat a class, got {labels.tolist()}")
        if not np.isin(y_true, labels).any() and y_true.size:
            raise ValueError("at least one label given in labels must occur in y_true")
    k = len(labels)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]

    def index_of(values):
        pos = np.clip(np.searchsorted(sorted_labels, values), 0, k - 1)
        found = sorted_labels[pos] == values
        return order[pos], found

    ti, t_ok = index_of(y_true)
    pi, p_ok = index_of(y_pred)
    keep = t_ok & p_ok
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (ti[keep], pi[keep]), 1)
    return cm


def classification_counts(y_true, y_pred, labels=None):
    """Per-class ``(labels, tp, pred_count, true_count)``: the numbers every score uses.

    ``pred_count = TP + FP`` (column sums of the confusion matrix), ``true_count =
    TP + FN`` (row sums, the "support").
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    if labels is None:
        labels = np.union1d(y_true, y_pred)
    tp = np.array([((y_true == c) & (y_pred == c)).sum() for c in labels], dtype=np.float64)
    pred_count = np.array([(y_pred == c).sum() for c in labels], dtype=np.float64)
    true_count = np.array([(y_true == c).sum() for c in labels], dtype=np.float64)
    return np.asarray(labels), tp, pred_count, true_count


def _divide(num, den, zero_division):
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, float(zero_division))
    np.divide(num, den, out=out, where=den != 0)
    return out


def _prf(y_true, y_pred, beta, average, pos_label, zero_division):
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {list(_AVERAGES)}, got {average!r}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    y_true, y_pred = _check_pair(y_true, y_pred)
    present = np.union1d(y_true, y_pred)
    if average == "binary":
        if len(present) > 2:
            raise ValueError(
                f"Target is multiclass ({len(present)} labels) but average='binary'; "
                "choose average='micro', 'macro', 'weighted' or None")
        if pos_label not in present.tolist() and len(present) >= 2:
            raise ValueError(f"pos_label={pos_label!r} is not a valid label: it must be one of {present.tolist()}")
        labels = np.asarray([pos_label])
    else:
        labels = present
    labels, tp, pred_count, true_count = classification_counts(y_true, y_pred, labels)
    if average == "micro":
        tp, pred_count, true_count = tp.sum(keepdims=True), pred_count.sum(keepdims=True), true_count.sum(keepdims=True)
    fp = pred_count - tp
    fn = true_count - tp
    precision = _divide(tp, pred_count, zero_division)
    recall = _divide(tp, true_count, zero_division)
    b2 = beta * beta
    if np.isinf(beta):
        fscore = recall
    else:
        fscore = _divide((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp, zero_division)
    if average is None:
        return precision, recall, fscore, true_count
    if average == "weighted":
        weights = true_count
        if weights.sum() == 0:
            return float(zero_division), float(zero_division), float(zero_division), None
        return tuple(float(np.average(s, weights=weights)) for s in (precision, recall, fscore)) + (None,)
    return float(precision.mean()), float(recall.mean()), float(fscore.mean()), None


def precision_score(y_true, y_pred, average="binary", pos_label=1, zero_division=0.0):
    """``TP / (TP + FP)``: of the samples predicted positive, the fraction really positive."""
    return _prf(y_true, y_pred, 1.0, average, pos_label, zero_division)[0]


def recall_score(y_true, y_pred, average="binary", pos_label=1, zero_division=0.0):
    """``TP / (TP + FN)``: of the really positive samples, the fraction found."""
    return _prf(y_true, y_pred, 1.0, average, pos_label, zero_division)[1]


def fbeta_score(y_true, y_pred, beta, average="binary", pos_label=1, zero_division=0.0):
    """``F_beta = (1 + beta^2) P R / (beta^2 P + R)``, computed from counts as in the module notes."""
    return _prf(y_true, y_pred, float(beta), average, pos_label, zero_division)[2]


def f1_score(y_true, y_pred, average="binary", pos_label=1, zero_division=0.0):
    """``F_1 = 2 P R / (P + R)``, the harmonic mean of precision and recall."""
    return _prf(y_true, y_pred, 1.0, average, pos_label, zero_division)[2]


# Generative-model metrics live in their own module (dlcore/metrics_fid.py).
from .metrics_fid import frechet_distance  # noqa: E402

__all__ += ["frechet_distance"]
