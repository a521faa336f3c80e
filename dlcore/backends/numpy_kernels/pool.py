"""NumPy twins for src/dlcore/pool.pyx (being written)."""
__all__ = []
