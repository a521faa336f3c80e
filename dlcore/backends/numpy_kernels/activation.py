"""NumPy twins for src/dlcore/activation.pyx (being written)."""
__all__ = []
