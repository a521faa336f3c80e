"""NumPy twins for src/dlcore/conv.pyx (being written)."""
__all__ = []
