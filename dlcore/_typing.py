"""Type aliases used in dlcore's annotations (the package ships them: ``dlcore/py.typed``)."""
from typing import Tuple, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

__all__ = ["Array", "ArrayLike", "DTypeLike", "IntPair"]

#: What dlcore's operations return: a NumPy array (float32 or float64 unless said otherwise).
Array = np.ndarray
#: A size that is the same on both axes (``3``) or given per axis (``(3, 2)``).
IntPair = Union[int, Tuple[int, int]]
