"""Export a dlcore model to PyTorch (``to_torch``) or to an ONNX file (``to_onnx``).

Both are optional paths out of dlcore: ``to_torch`` needs ``torch``; ``to_onnx`` needs the
``onnx`` package (``pip install onnx onnxruntime``, or the ``export`` extra when installing
dlcore from source, ``pip install ".[export]"``, which also brings ``onnxruntime`` to run
the file).
"""
from .torch_export import to_torch
from .onnx_export import to_onnx

__all__ = ["to_torch", "to_onnx"]
