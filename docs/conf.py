"""Sphinx configuration for dlcore's documentation.

Build (from the repository root, with ``pip install ".[docs]"``)::

    sphinx-build -W -b html docs docs/_build/html       # the site
    sphinx-build -W -b doctest docs docs/_build/doctest # run the docstring examples
    sphinx-build -W -b linkcheck docs docs/_build/linkcheck

The tutorial figures are made by the example scripts: before reading the sources, each
``examples/<name>.py`` whose figure is missing from ``docs/_generated/figures`` runs with
``DLCORE_EXAMPLE_FIGURES`` pointing there (full size, a few minutes in all; with
``DLCORE_EXAMPLE_QUICK=1`` in the environment, a quick run). Delete the folder to redo them.
MathJax is served from the built site itself (sphinx-mathjax-offline), so formulas render
without a network.
"""
import importlib
import inspect
import os
import subprocess
import sys

import dlcore

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIGURES = os.path.join(HERE, "_generated", "figures")

project = "dlcore"
author = "the dlcore developers"
copyright = "2026, the dlcore developers"
release = dlcore.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx-mathjax-offline",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
templates_path = []
html_static_path = ["_static"]
html_css_files = ["dlcore.css"]
html_theme = "furo"
html_title = f"dlcore {release}"

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autosummary_generate = False
napoleon_numpy_docstring = True
napoleon_google_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes" sections as fields, not duplicate attribute entries
myst_heading_anchors = 3
# CHANGELOG.md and README sections are included below a page title of their own
suppress_warnings = ["myst.header"]

# With -n (nitpicky), every reference into dlcore must resolve; names outside this site
# (numpy's, Python's, the docstrings' type words such as "ndarray" or "pair") are not links.
# Private base classes (shown as bases of public ones) have no page either.
# So have the kernel modules (the twins are read in the source) and the bench's worker.
nitpick_ignore_regex = [(r"py:.*", r"(?!dlcore\.).*"), (r"py:class", r"dlcore\..*\._[A-Za-z]\w*"),
                        (r"py:mod", r"dlcore\.backends\..*|dlcore\.bench\._worker")]

# linkcheck: the site's own links and anchors; external sites are not reached from CI.
linkcheck_ignore = [r"https?://.*"]
linkcheck_anchors = True

doctest_global_setup = "import numpy as np\nimport dlcore\n"


def _make_figures(app):
    """Run each example whose figure is missing, saving its PNG for the tutorial pages."""
    os.makedirs(FIGURES, exist_ok=True)
    examples = os.path.join(ROOT, "examples")
    env = dict(os.environ, DLCORE_EXAMPLE_FIGURES=FIGURES, MPLBACKEND="Agg")
    for name in sorted(os.listdir(examples)):
        if name.startswith("_") or not name.endswith(".py"):
            continue
        target = os.path.join(FIGURES, name[:-3] + ".png")
        if os.path.exists(target):
            continue
        print(f"dlcore docs: running examples/{name} for its figure", flush=True)
        result = subprocess.run([sys.executable, os.path.join(examples, name)], env=env,
                                capture_output=True, text=True, cwd=examples)
        if result.returncode != 0 or not os.path.exists(target):
            raise RuntimeError(f"examples/{name} failed to make {target}:\n{result.stdout}\n{result.stderr}")


# ---- the API pages: one per package, a section per submodule, names at their public path ----
API = {  # package: (page title, [(submodule, section title), ...])
    "dlcore": ("``dlcore``: backends, threads, seeds, saving, checks and tools",
               [("dlcore", "Backends and threads"), ("dlcore.backends", "The kernel registry"),
                ("dlcore.backends.user", "Your own backend"),
                ("dlcore.serialization", "Saving"),
                ("dlcore.gradcheck", "Gradient checks"),
                ("dlcore.verify", "Verifying a backend's kernels (dlcore verify)"),
                ("dlcore.compare", "Comparing with PyTorch, layer by layer"),
                ("dlcore.profiling", "Profiling a training step"),
                ("dlcore.doctor", "Diagnosing the set-up (dlcore doctor)")]),
    "dlcore.nn": ("``dlcore.nn``: modules, layers and losses",
                  [("dlcore.nn.module", "The base class"), ("dlcore.nn.layers", "Layers and activations"),
                   ("dlcore.nn.conv", "Convolutions"), ("dlcore.nn.pooling", "Pooling"),
                   ("dlcore.nn.upsample", "Upsampling and concatenation"),
                   ("dlcore.nn.normalization", "Normalization"), ("dlcore.nn.loss", "Losses"),
                   ("dlcore.nn.init", "Initialization"), ("dlcore.nn.summary", "Summary")]),
    "dlcore.functional": ("``dlcore.functional``: stateless operations",
                          [("dlcore.functional.linear", "Linear and dropout"),
                           ("dlcore.functional.activation", "Activations"),
                           ("dlcore.functional.conv", "Convolutions, unfold and fold"),
                           ("dlcore.functional.pooling", "Pooling"),
                           ("dlcore.functional.resample", "Upsampling and concatenation"),
                           ("dlcore.functional.normalization", "Normalization"),
                           ("dlcore.functional.loss", "Losses")]),
    "dlcore.optim": ("``dlcore.optim``: optimizers and schedules",
                     [("dlcore.optim.optimizer", "The base class"), ("dlcore.optim.sgd", "SGD"),
                      ("dlcore.optim.adagrad", "Adagrad"), ("dlcore.optim.rmsprop", "RMSprop"),
                      ("dlcore.optim.adam", "Adam and AdamW"),
                      ("dlcore.optim.lr_scheduler", "Learning-rate schedules")]),
    "dlcore.train": ("``dlcore.train``: the training loop",
                     [("dlcore.train.loop", "The loop"), ("dlcore.train.callbacks", "Callbacks"),
                      ("dlcore.train.history", "History"), ("dlcore.train.progress", "Progress"),
                      ("dlcore.train._blas", "BLAS threads")]),
    "dlcore.data": ("``dlcore.data``: loading and preparing data",
                    [("dlcore.data.loader", "Batches"), ("dlcore.data.preprocessing", "Preprocessing"),
                     ("dlcore.data.datasets", "Datasets"), ("dlcore.data.transforms", "Augmentation")]),
    "dlcore.models": ("``dlcore.models``: classic learners and networks",
                      [("dlcore.models.linear_models", "Single-layer learners"),
                       ("dlcore.models.networks", "Network builders"),
                       ("dlcore.models.generative", "Generative models: VAE and DCGAN")]),
    "dlcore.diffusion": ("``dlcore.diffusion``: denoising diffusion",
                         [("dlcore.diffusion.schedule", "Noise schedules and the diffusion process"),
                          ("dlcore.diffusion.unet", "The U-Net")]),
    "dlcore.metrics": ("``dlcore.metrics``: classification metrics and the Fréchet distance",
                       [("dlcore.metrics", "Metrics"), ("dlcore.metrics_fid", "Judging generated digits")]),
    "dlcore.export": ("``dlcore.export``: to PyTorch and ONNX",
                      [("dlcore.export.torch_export", "To PyTorch"), ("dlcore.export.onnx_export", "To ONNX")]),
    "dlcore.bench": ("``dlcore.bench``: the benchmark tool",
                     [("dlcore.bench.report", "Running and reporting"), ("dlcore.bench.cases", "The cases"),
                      ("dlcore.bench.timing", "Timing"), ("dlcore.bench.machine", "The machine's limits")]),
}


def _public_names(module):
    names = getattr(module, "__all__", None)
    if names is None:  # modules without __all__: what they define themselves
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and getattr(v, "__module__", None) == module.__name__ and (inspect.isclass(v) or inspect.isfunction(v))]
    return list(names)


def _write_api_pages(app):
    folder = os.path.join(HERE, "_generated", "api")
    os.makedirs(folder, exist_ok=True)
    for package, (title, sections) in API.items():
        pkg = importlib.import_module(package)
        lines = [title, "=" * len(title), "", f".. automodule:: {package}", "   :no-members:", ""]
        shown = set()
        later = {sub for sub, _ in sections if sub != package}  # the sections that show their own names
        for sub, heading in sections:
            module = importlib.import_module(sub)
            lines += [heading, "-" * len(heading), ""]
            if sub != package:
                # F.linear (a function) and dlcore.functional.linear (its module) share a name
                clash = not inspect.ismodule(getattr(pkg, sub.rpartition(".")[2], module))
                lines += [f".. automodule:: {sub}", "   :no-members:"] + (["   :no-index:"] if clash else []) + [""]
            for name in _public_names(module):
                obj = getattr(module, name)
                if inspect.ismodule(obj) or id(obj) in shown or (sub == "dlcore" and name in ("gradcheck", "save", "load")):
                    continue
                if sub == package and getattr(obj, "__module__", None) in later:
                    continue
                shown.add(id(obj))
                # data is documented where its "#:" comment is; the rest at its shortest public
                # path (dlcore.backends.register_backend, not dlcore.backends.user.register_backend)
                home = next((p for p in (package, sub.rpartition(".")[0]) if p and callable(obj)
                             and getattr(importlib.import_module(p), name, None) is obj), sub)
                kind = "autoclass" if inspect.isclass(obj) else "autofunction" if callable(obj) else "autodata"
                lines += [f".. currentmodule:: {home}", "", f".. {kind}:: {name}"]
                if inspect.isclass(obj):  # options right below the directive (after a blank line they are text)
                    lines += ["   :members:", "   :show-inheritance:"]
                lines += [""]
        text = "\n".join(lines) + "\n"
        path = os.path.join(folder, package.replace(".", "_") + ".rst")
        if not os.path.exists(path) or open(path).read() != text:
            with open(path, "w") as fh:
                fh.write(text)


def setup(app):
    app.connect("builder-inited", _write_api_pages)
    app.connect("builder-inited", _make_figures)
