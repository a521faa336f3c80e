"""NumPy twins for src/dlcore/optim.pyx (being written)."""
__all__ = []
