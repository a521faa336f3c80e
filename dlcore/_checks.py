"""Input validation shared by functional ops, layers, losses and optimizers.

Validation happens once, here in Python, before a kernel runs: the compiled loops have
bounds checks off, so everything they index must already be known to be in range.
Every message names the argument, what was expected and what was given.
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import DTypeLike

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def describe(x: Any) -> str:
    """A short description of a value for error messages."""
    if isinstance(x, np.ndarray):
        return f"an array of shape {x.shape} and dtype {x.dtype}"
    return f"{type(x).__name__} {x!r}"


def as_floating(x: Any, name: str, dtype: Optional[DTypeLike] = None) -> np.ndarray:
    """``x`` as a C-contiguous float32/float64 ndarray.

    dtype=None keeps the input's floating precision (float16 is promoted to float32);
    otherwise floating input is cast to ``dtype`` (a module computes in its parameters'
    dtype). Integer, bool, complex and object input raise TypeError: a silent cast
    would hide a bug (labels passed where images were meant, say).
    """
    if (type(x) is np.ndarray and x.dtype.kind == "f" and x.flags.c_contiguous
            and (x.dtype == dtype if dtype is not None else x.dtype in FLOAT_DTYPES)):
        return x  # already what is asked for: the common case, kept cheap (every layer calls this)
    if not isinstance(x, np.ndarray):
        if isinstance(x, (numbers.Real, list, tuple)) and not isinstance(x, bool):
            x = np.asarray(x)
        else:
            raise TypeError(f"{name} must be a floating numpy array, got {describe(x)}")
    if x.dtype.kind != "f":
        raise TypeError(f"{name} must have a floating dtype (float32 or float64), got dtype {x.dtype}")
    target = np.dtype(dtype) if dtype is not None else (x.dtype if x.dtype in FLOAT_DTYPES else np.dtype(np.float32))
    return np.ascontiguousarray(x, dtype=target).reshape(x.shape)  # keeps 0-d input 0-d


def as_int_labels(y: Any, name: str, num_classes: Optional[int] = None,
                  shape: Optional[Sequence[int]] = None) -> np.ndarray:
    """Integer class labels as a C-contiguous int64 array, each in [0, num_classes)."""
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if shape is not None and y.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {y.shape}")
    if num_classes is not None and y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = y.min() if y.min() < 0 else y.max()
        raise ValueError(f"{name} must lie in [0, {num_classes}), got a label {int(bad)}")
    return np.ascontiguousarray(y, dtype=np.int64)


def check_ndim(x: np.ndarray, ndims: Union[int, Sequence[int]], name: str, layout: Optional[str] = None) -> None:
    """Raise ValueError unless ``x.ndim`` is one of ``ndims`` (an int or a tuple of ints)."""
    ndims = (ndims,) if isinstance(ndims, int) else tuple(ndims)
    if x.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims) + (f" {layout}" if layout else "")
        raise ValueError(f"{name} must be {want}, got shape {x.shape}")


def check_int(value: Any, name: str, minimum: Optional[int] = None) -> int:
    """``value`` as a Python int, with an optional lower bound."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral,)):
        raise TypeError(f"{name} must be an int, got {describe(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def pair(value: Any, name: str, minimum: int = 0) -> Tuple[int, int]:
    """An int or a pair of ints as a tuple ``(h, w)``, each >= ``minimum``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return (check_int(value[0], name, minimum), check_int(value[1], name, minimum))
    v = check_int(value, name, minimum)
    return (v, v)


def check_number(value: Any, name: str, minimum: Optional[float] = None, maximum: Optional[float] = None,
                 min_open: bool = False, max_open: bool = False) -> float:
    """``value`` as a Python float within the given bounds (``*_open``: the bound excluded)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {describe(value)}")
    value = float(value)
    if not np.isfinite(value) and (minimum is not None or maximum is not None):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value < minimum or (min_open and value == minimum)):
        raise ValueError(f"{name} must be {'>' if min_open else '>='} {minimum}, got {value}")
    if maximum is not None and (value > maximum or (max_open and value == maximum)):
        raise ValueError(f"{name} must be {'<' if max_open else '<='} {maximum}, got {value}")
    return value


def check_reduction(reduction: Any) -> str:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    return reduction


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_b} must have the shape of {name_a} {a.shape}, got {b.shape}")


# ---- decisions made once: dtype arguments, window geometry -----------------------------------
def float_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """A ``dtype=`` argument as ``np.dtype('float32')`` or ``np.dtype('float64')``; else TypeError."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from None
    if resolved not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {resolved}")
    return resolved


def window(kernel_size: Any, stride: Any = None, padding: Any = 0,
           max_padding: Optional[str] = "half") -> Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]:
    """A sliding window's ``(kernel, stride, padding)``, each a pair ``(h, w)``.

    ``stride=None`` means the kernel (pooling's default). With ``max_padding="half"``
    (pooling, as torch) the padding may be at most half the kernel on each axis, so every
    window holds at least one real element; ``None`` leaves the padding unbounded.
    """
    kernel = pair(kernel_size, "kernel_size", 1)
    stride = kernel if stride is None else pair(stride, "stride", 1)
    padding = pair(padding, "padding", 0)
    if max_padding == "half" and (padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2):
        raise ValueError(
            f"padding must be at most half of kernel_size {kernel}, i.e. <= {(kernel[0] // 2, kernel[1] // 2)}, "
            f"got {padding}"
        )
    return kernel, stride, padding


def check_window_fits(size: Sequence[int], kernel: Sequence[int], padding: Sequence[int], name: str = "x",
                      dilation: Sequence[int] = (1, 1)) -> None:
    """Raise ValueError unless a ``kernel`` (taps ``dilation`` apart) fits in the padded
    ``size = (H, W)`` (else no output). The one place this is checked: layers leave it to
    ``dlcore.functional``."""
    for axis, label in ((0, "H"), (1, "W")):
        padded = size[axis] + 2 * padding[axis]
        extent = dilation[axis] * (kernel[axis] - 1) + 1
        if extent > padded:
            dilated = tuple(dilation) != (1, 1)
            raise ValueError(
                f"kernel_size {tuple(kernel)}" + (f" with dilation {tuple(dilation)}" if dilated else "")
                + f" is larger than the padded input: {name} of size {tuple(size)} with padding {tuple(padding)} "
                f"gives {padded} along {label}" + (f" and the dilated kernel spans {extent}" if dilated else "")
                + ", so the output would be empty"
            )


def window_output_size(size: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                       padding: Sequence[int]) -> Tuple[int, int]:
    """``(H_out, W_out)``: ``floor((H + 2 p - k) / s) + 1`` on each axis (the window must fit)."""
    return ((size[0] + 2 * padding[0] - kernel[0]) // stride[0] + 1,
            (size[1] + 2 * padding[1] - kernel[1]) // stride[1] + 1)


def check_linear_input(x: np.ndarray, in_features: int, name: str = "input") -> None:
    """Raise ValueError unless ``x`` has shape ``(*, in_features)``."""
    if x.ndim < 1 or x.shape[-1] != in_features:
        raise ValueError(f"{name} must have shape (*, in_features={in_features}), got shape {x.shape}")
