"""Bring your own kernel: register a backend whose kernels are (partly) yours.

A student who has written, say, a naive-loop ``conv2d_forward`` plugs it in with ::

    import dlcore
    dlcore.backends.register_backend("mine", {"conv2d_forward": my_conv2d_forward})
    dlcore.set_backend("mine")          # every layer, loss and optimizer now calls it

Kernels not in the dict come from ``base`` (the NumPy twin by default), so a one-kernel
dict is a per-kernel override. ``python -m dlcore verify --backend mine`` (or
:func:`dlcore.verify.verify`) then checks the new kernel against the twin and torch and
times it. A kernel must keep the twin's signature and contract (see
:mod:`dlcore.backends` and the twin's docstring): write into the ``out`` arrays it is
given, take ``n_threads`` last.
"""
import inspect
import types

__all__ = ["register_backend", "unregister_backend", "user_backends"]

BUILTIN = ("numpy", "cython")

# The registry module, dlcore.backends: handed over by attach() when it imports, so this
# module needs no import of its package (no import cycle).
_registry = None


def attach(registry):
    """Called once by :mod:`dlcore.backends` with itself."""
    global _registry
    _registry = registry


def _check_signature(name, fn, twin):
    """A clear error now, instead of a TypeError deep inside a layer later."""
    try:
        twin_params = list(inspect.signature(twin).parameters)
    except (TypeError, ValueError):  # a compiled twin without a signature: nothing to compare
        return
    try:
        inspect.signature(fn).bind(*twin_params)
    except TypeError:
        raise ValueError(f"kernels[{name!r}] must accept the twin's arguments "
                         f"({', '.join(twin_params)}), got a function with signature "
                         f"{inspect.signature(fn)}") from None
    except ValueError:  # builtins without a signature: trust them
        pass


def register_backend(name, kernels, base="numpy"):
    """Register backend ``name``: the functions in ``kernels``, ``base``'s kernels for the rest.

    Args:
        name (str): the new backend's name (not ``"numpy"`` or ``"cython"``); registering
            a name again replaces the earlier registration.
        kernels (dict): kernel name -> callable with the twin's signature, e.g.
            ``{"relu_forward": my_relu}``. Names must be in
            ``dlcore.backends.KERNEL_NAMES``.
        base (str): the backend that supplies every kernel not in ``kernels``
            (default ``"numpy"``, the readable twin).

    Returns:
        the new :class:`~dlcore.backends.Backend`; its ``user_kernels`` attribute is the
        tuple of overridden names (what ``verify`` checks by default).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if name in BUILTIN:
        raise ValueError(f"name must not be a built-in backend {BUILTIN}, got {name!r}")
    if not isinstance(kernels, dict):
        raise TypeError(f"kernels must be a dict of kernel name -> function, got {type(kernels).__name__}")
    names = _registry.KERNEL_NAMES
    base_backend = _registry.backend(base)
    twin = _registry.backend("numpy")
    for kernel, fn in kernels.items():
        if kernel not in names:
            raise ValueError(f"kernels has an unknown kernel name {kernel!r}; "
                             f"known kernels: {', '.join(names)}")
        if not callable(fn):
            raise TypeError(f"kernels[{kernel!r}] must be callable, got {type(fn).__name__}")
        _check_signature(kernel, fn, getattr(twin, kernel))
    namespace = types.SimpleNamespace(**{k: getattr(base_backend, k) for k in names})
    for kernel, fn in kernels.items():
        setattr(namespace, kernel, fn)
    backend = _registry.Backend(name, namespace, openmp=False)
    backend.user_kernels = tuple(k for k in names if k in kernels)
    backend.base = base
    _registry._backends[name] = backend
    return backend


def unregister_backend(name):
    """Remove a backend added by :func:`register_backend` (the default becomes active if it was)."""
    if name in BUILTIN or name not in _registry._backends:
        raise ValueError(f"name must be a registered user backend {user_backends()}, got {name!r}")
    if _registry.get_backend() == name:
        _registry.set_backend(next(b for b in _registry.available_backends() if b in BUILTIN))
    del _registry._backends[name]


def user_backends():
    """Names of the backends registered with :func:`register_backend`."""
    return [name for name in _registry._backends if name not in BUILTIN]
