"""Data: mini-batch loading, datasets, preprocessing and augmentation.

* :class:`DataLoader` -- shuffled mini-batches, reproducible with a seed.
* :func:`load_digits`, :func:`load_mnist`, :func:`load_npz`, :func:`load_breast_cancer`.
* :func:`one_hot`, :class:`LabelBinarizer`, :func:`train_test_split`,
  :class:`StandardScaler`, :func:`resize_images`.
* augmentation in :mod:`dlcore.data.transforms`: :class:`RandomHorizontalFlip`,
  :class:`RandomCrop`, :class:`RandomShift`, :class:`GaussianNoise`, :class:`Compose`.
"""
from .loader import DataLoader
from .preprocessing import LabelBinarizer, StandardScaler, one_hot, resize_images, train_test_split
from .datasets import load_breast_cancer, load_digits, load_idx, load_mnist, load_npz
from .transforms import Compose, GaussianNoise, RandomCrop, RandomHorizontalFlip, RandomShift

__all__ = [
    "Compose",
    "DataLoader",
    "GaussianNoise",
    "LabelBinarizer",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomShift",
    "StandardScaler",
    "load_breast_cancer",
    "load_digits",
    "load_idx",
    "load_mnist",
    "load_npz",
    "one_hot",
    "resize_images",
    "train_test_split",
]
