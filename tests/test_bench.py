"""Smoke tests of the benchmark report machinery (dlcore.bench, python -m dlcore bench).

No speed is asserted here (DESIGN.md: speed is measured in benchmarks, never in unit
tests). The runs are tiny: synthetic cases, a few milliseconds of timing each, the
machine limits replaced by fixed numbers, torch off unless a test needs it.
"""
import json
import sys

import numpy as np
import pytest

import dlcore
from dlcore.__main__ import main
from dlcore.bench import cases as bench_cases
from dlcore.bench import report as rep
from dlcore.bench.cases import Bound, Case

LIMITS = {"threads": 1, "gemm_n": 8, "gemm_gflops": 10.0, "gemm_gflops_median": 9.0,
          "copy_gbs": 5.0, "update_gbs": 6.0, "bandwidth_gbs": 6.0, "stream_mb": 1.0}
HAS_CYTHON = "cython" in dlcore.available_backends()


def _elementwise_case(key="synthetic.add", wrong_on_cython=False, nbytes=3 * 4 * 10_000,
                      target=""):
    """A tiny memory-bound case: y = 2x through NumPy, optionally wrong on the compiled backend."""

    def build(kind, quick):
        x = np.arange(10_000, dtype=np.float32)
        if kind == "torch":
            raise bench_cases.Unavailable("synthetic case has no torch twin")

        def run():
            scale = 3.0 if (wrong_on_cython and dlcore.get_backend() == "cython") else 2.0
            return x * np.float32(scale)
        return Bound(run)

    return Case(key=key, name=f"synthetic {key}", group="activation", build=build,
                nbytes=nbytes, target=target)


def _run(monkeypatch, cases, **kwargs):
    monkeypatch.setattr(rep, "all_cases", lambda quick=False, filter=None: list(cases))
    monkeypatch.setattr(rep.machine, "measure_limits", lambda threads, quick=False: dict(LIMITS))
    kwargs.setdefault("torch_mode", "off")
    kwargs.setdefault("budget", 0.05)
    kwargs.setdefault("progress", False)
    return rep.run_bench(quick=True, threads=1, **kwargs)


def test_case_list_is_complete_and_unique():
    keys = [c.key for c in bench_cases.CASES]
    assert len(keys) == len(set(keys))
    groups = {c.group for c in bench_cases.CASES}
    assert groups == {"conv", "pool", "norm", "activation", "loss", "optim", "model"}
    # every activation and optimizer of the issue, at both sizes
    for name in ("relu", "leaky_relu", "sigmoid", "tanh", "silu", "sgd_momentum", "adagrad",
                 "rmsprop", "adam", "adamw"):
        assert sum(k.startswith(name + ".") for k in keys) == 2, name
    quick = bench_cases.all_cases(quick=True)
    assert 5 <= len(quick) < len(keys)
    assert [c.key for c in bench_cases.all_cases(filter="CONV2D FWD+BWD")] == [
        "conv2d.fb.lenet1", "conv2d.fb.lenet2", "conv2d.fb.c64", "conv2d.fb.s2"]
    assert bench_cases.all_cases(filter="no such case") == []
    assert all(not c.full_only for c in bench_cases.all_cases(include_full_only=False))


def test_conv_flops_formula():
    case = bench_cases.get_case("conv2d.f.c64")
    assert case.flops == 2.0 * 32 * 64 * 64 * 3 * 3 * 32 * 32
    assert bench_cases.get_case("conv2d.fb.c64").flops == 3 * case.flops
    stride2 = bench_cases.get_case("conv2d.f.s2")
    assert stride2.flops == 2.0 * 32 * 128 * 64 * 9 * 16 * 16
    with pytest.raises(KeyError, match="nope"):
        bench_cases.get_case("nope")


def test_to_numpy_handles_tensors_floats_and_parameters():
    p = dlcore.nn.Parameter(np.ones(3, dtype=np.float32))
    out = bench_cases.to_numpy((np.zeros(2, np.float32), 1.5, p))
    assert [a.dtype for a in out] == [np.float64] * 3
    assert out[1] == 1.5 and out[2].shape == (3,)


def test_tiny_run_structure_json_and_table(monkeypatch, tmp_path):
    report = _run(monkeypatch, [_elementwise_case(target="bandwidth")])
    assert report["mode"] == "quick" and report["torch_mode"] == "off"
    assert set(report["header"]) >= {"cpu", "threads", "build_info", "numpy", "load_average_start",
                                     "load_average_end", "threadpool_info"}
    (case,) = report["cases"]
    numpy_result = case["impls"]["numpy"]
    assert numpy_result["ok"] and numpy_result["repeats"] >= 3
    assert numpy_result["median_s"] > 0 and numpy_result["gbs"] > 0
    if HAS_CYTHON:
        assert case["checks"]["cython"] == "ok"
        m = case["metrics"]
        assert m["cython/numpy"] > 0 and m["gbs"] > 0
        assert m["times_floor"] == pytest.approx(case["impls"]["cython"]["median_s"] / m["floor_s"])
    path = tmp_path / "bench.json"
    rep.write_json(report, path)
    loaded = json.loads(path.read_text())
    assert loaded["cases"][0]["key"] == "synthetic.add"
    assert "limits" in loaded and "warnings" in loaded and "targets" not in loaded
    text = rep.format_report(report)
    assert "synthetic synthetic.add" in text and "GB/s" in text and "limits" in text
    # a user's tool: measurements only, no project goals or internal documents
    for word in ("goal", "Targets", "STYLE", "pitfall", ".md"):
        assert word not in text, word


@pytest.mark.skipif(not HAS_CYTHON, reason="needs two backends to disagree")
def test_a_wrong_compiled_result_is_reported(monkeypatch):
    report = _run(monkeypatch, [_elementwise_case(wrong_on_cython=True)])
    check = report["cases"][0]["checks"]["cython"]
    assert check.startswith("FAIL") and "relative error" in check
    assert any(w.startswith("wrong result") for w in report["warnings"])
    assert "!" in rep.format_report(report)


def test_unavailable_implementation_is_na_not_fatal(monkeypatch):
    def build(kind, quick):
        raise AttributeError("module 'dlcore.functional' has no attribute 'frobnicate'")

    case = Case(key="synthetic.missing", name="missing op", group="conv", build=build, flops=1e6)
    report = _run(monkeypatch, [case])
    impls = report["cases"][0]["impls"]
    assert not impls["numpy"]["ok"] and "frobnicate" in impls["numpy"]["reason"]
    assert "n/a" in rep.format_report(report)


def test_plot_png_or_clear_message(monkeypatch, tmp_path):
    report = _run(monkeypatch, [_elementwise_case()])
    report["cases"][0]["metrics"]["cython/numpy"] = 0.5  # a ratio to draw, with or without cython
    path = tmp_path / "ratios.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(rep.PlotUnavailable, match="matplotlib is not installed"):
            rep.plot_ratios(report, path)
    else:
        rep.plot_ratios(report, path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # matplotlib missing: the message, no file
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(rep.PlotUnavailable, match="pip install matplotlib"):
        rep.plot_ratios(report, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def _project_targets():
    """benchmarks/targets.py, the project's own targets (not part of the installed package)."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "targets.py"
    if not path.exists():
        pytest.skip("benchmarks/targets.py is not next to the tests")
    spec = importlib.util.spec_from_file_location("dlcore_project_targets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_project_targets_verdicts_and_check(tmp_path, capsys):
    targets = _project_targets()
    report = {"limits": dict(LIMITS), "cases": [
        {"key": "lenet5.train_step.b64", "name": "step", "target": "", "bytes": 0,
         "metrics": {"cython/torch": 0.35, "cython/numpy": 0.5}},
        {"key": "conv2d.fb.c64", "name": "conv", "target": "gemm", "bytes": 0,
         "metrics": {"fraction_of_gemm": 0.7, "gflops": 7.0, "cython/numpy": 0.38}},
        {"key": "conv2d.fb.lenet2", "name": "conv2", "target": "", "bytes": 0,
         "metrics": {"cython/numpy": 0.38}},
        {"key": "relu.fb.1e7", "name": "relu", "target": "bandwidth", "bytes": 2e8,
         "metrics": {"times_floor": 1.6}},
        {"key": "adam.step.1e7", "name": "adam", "target": "bandwidth", "bytes": 2e8, "metrics": {}},
    ]}
    verdicts = [t["status"] for t in targets.targets(report)]
    # 1/0.38 = 2.6x the twin: enough for the 64-channel case (2.5x), not for LeNet's (3x)
    assert verdicts == ["met", "GAP", "met", "met", "GAP", "GAP", "n/a"]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(report))
    assert targets.main([str(path)]) == 0
    assert targets.main([str(path), "--strict"]) == 1
    assert "[ GAP] LeNet-5 train step: speedup" in capsys.readouterr().out


def test_plot_without_torch_has_no_empty_legend_entry(monkeypatch):
    pytest.importorskip("matplotlib")
    report = _run(monkeypatch, [_elementwise_case()])
    report["cases"][0]["metrics"].update({"cython/numpy": 0.5, "cython/torch": None})
    legend = rep.ratio_figure(report).axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["compiled / NumPy twin"]
    report["cases"][0]["metrics"]["cython/torch"] = 2.0
    legend = rep.ratio_figure(report).axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["compiled / NumPy twin", "compiled / torch"]


def test_cli_list_and_bad_filter(capsys):
    assert main(["bench", "--list", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "lenet5.train_step.b64" in out and "adagrad.step.1e6" not in out
    assert main(["bench", "--filter", "no such case", "--torch", "off", "--no-progress"]) == 2
    assert "no benchmark case" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--threads", "0"])


def test_cli_end_to_end_json(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(rep, "all_cases", lambda quick=False, filter=None: [_elementwise_case()])
    monkeypatch.setattr(rep.machine, "measure_limits", lambda threads, quick=False: dict(LIMITS))
    path = tmp_path / "out.json"
    code = main(["bench", "--quick", "--torch", "off", "--threads", "1", "--budget", "0.05",
                 "--no-progress", "--json", str(path)])
    assert code == 0
    assert "synthetic" in capsys.readouterr().out
    assert json.loads(path.read_text())["header"]["threads"] == 1


def test_torch_worker_protocol():
    pytest.importorskip("torch")
    from dlcore.bench.timing import TorchWorker, WorkerRunner

    worker = TorchWorker(threads=1)
    try:
        assert worker.info["ok"] and worker.info["threads"] == 1
        runner = WorkerRunner(worker, bench_cases.get_case("cross_entropy.fb.64x10"), 1)
        assert runner.start(), runner.reason
        assert runner.sample() > 0
        loss, grad = runner.result()
        assert grad.shape == (64, 10) and np.isfinite(loss).all()
        # the gradient of a mean cross-entropy sums to zero over each row
        np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-6)
        runner.close()
    finally:
        worker.close()
    assert worker.proc.returncode == 0


def test_worker_runs_a_dlcore_backend_in_a_clean_process():
    from dlcore.bench.timing import Worker, WorkerRunner

    worker = Worker(threads=1, impl="numpy")
    try:
        assert worker.info["ok"] and worker.info["torch_imported"] is False
        runner = WorkerRunner(worker, bench_cases.get_case("max_pool2d.fb.lenet2"), 1)
        assert runner.impl == "numpy"
        assert runner.start(), runner.reason
        assert runner.sample() > 0 and len(runner.times) == 1
        out, grad = runner.result()
        assert out.shape == (64, 16, 5, 5) and grad.shape == (64, 16, 10, 10)
        # each 2x2 window routes its gradient to exactly one input
        assert np.count_nonzero(grad) == out.size
        runner.close()
    finally:
        worker.close()


def test_measured_limits_are_positive_and_consistent():
    from dlcore.bench import machine

    limits = machine.measure_limits(threads=1, quick=True)
    assert limits["gemm_gflops"] >= limits["gemm_gflops_median"] > 0
    assert limits["copy_gbs"] >= limits["copy_gbs_median"] > 0
    assert limits["update_gbs"] >= limits["update_gbs_median"] > 0
    # the floor: the in-place probe (its byte count is the real traffic), as a median
    assert limits["bandwidth_gbs"] == limits["update_gbs_median"]
    assert limits["stream_mb"] >= 100  # far past any last-level cache, even in quick mode


def test_benchmark_suite_collects_every_case_times_every_impl():
    """``pytest benchmarks/ --benchmark-only`` collects case x implementation, no epoch."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "pytest", str(root / "benchmarks"), "--benchmark-only", "--collect-only", "-q",
           "-p", "no:cacheprovider"]
    # cwd beside the imported dlcore: `-m` puts the cwd first on sys.path, and the source
    # tree's dlcore has no compiled kernels when the package was pip-installed.
    package_parent = Path(bench_cases.__file__).resolve().parents[2]
    out = subprocess.run(cmd, cwd=package_parent, capture_output=True, text=True, env=dict(os.environ),
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    ids = [line for line in out.stdout.splitlines() if "::test_" in line]
    process = [i for i in ids if "test_bench_process.py" in i]
    ids = [i for i in ids if i not in process]
    expected = len(bench_cases.all_cases(include_full_only=False)) * len(bench_cases.IMPLS)
    assert len(ids) == expected
    assert len(process) == 2  # import order, busy machine
    assert any("conv2d.fb.c64-torch" in i for i in ids) and not any("epoch" in i for i in ids)


def test_process_cases_ratios_and_text(monkeypatch):
    """Import order and busy machine, with the fresh-process step replaced by fixed times."""
    from dlcore.bench import process

    calls = []

    def fake_step(impl, threads, samples, torch_first=False, timeout=600):
        busy = process._spinner_running
        calls.append((impl, torch_first, busy))
        t = {"cython": 0.010, "torch": 0.020}[impl] * (1.1 if torch_first else 1.0) * (2.0 if busy else 1.0)
        return {"ok": True, "median_s": t}

    spinners = []

    class FakeSpinner:
        def __init__(self):
            process._spinner_running = True
            spinners.append(self)

        def kill(self):
            process._spinner_running = False

        def wait(self):
            pass

    monkeypatch.setattr(process, "_spinner_running", False, raising=False)
    monkeypatch.setattr(process, "_step_in_fresh_process", fake_step)
    monkeypatch.setattr(process, "_spinner", FakeSpinner)
    monkeypatch.setattr(process.time, "sleep", lambda s: None)
    results = process.run_process_cases(2, quick=True)
    order, busy = results
    assert order["ratio"] == pytest.approx(1.1)
    assert busy["cython"]["ratio"] == pytest.approx(2.0) and busy["torch"]["ratio"] == pytest.approx(2.0)
    assert len(spinners) == 2 and not process._spinner_running  # every busy loop stopped
    assert ("cython", True, False) in calls and ("torch", False, True) in calls
    text = "\n".join(process.format_process_cases(results))
    assert "ratio 1.10" in text and "x2.00" in text
    assert "goal" not in text.lower()
    verdicts = [t["status"] for t in _project_targets().targets({"cases": [], "process_cases": results})]
    assert verdicts == ["met", "met"]
    assert [r["name"] for r in process.run_process_cases(2, quick=True, filter="busy")] == ["lenet5 busy machine"]


def test_main_does_not_hide_a_subcommand_that_fails_to_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlcore.cli_train", None)  # as if its import failed
    with pytest.raises(ImportError):
        main(["info"])


def test_kernel_cases_run_exactly_the_threads_asked_model_cases_as_a_user_would(monkeypatch):
    """A kernel case's "2 threads" are 2 even on a busy machine (the busy-machine rule is
    off while it runs); a training case keeps the rule, as a Trainer does; both restore it."""
    from dlcore.backends import threads
    from dlcore.bench.timing import run_context

    monkeypatch.setattr(threads, "DYNAMIC", True)
    with run_context("cython", 2):
        assert threads.DYNAMIC is False
    assert threads.DYNAMIC is True
    with run_context("cython", 2, training=True):
        assert threads.DYNAMIC is True
    monkeypatch.setattr(threads, "DYNAMIC", False)  # (the test suite's own setting stays)
    with run_context("cython", 2, training=True):
        assert threads.DYNAMIC is False
    assert threads.DYNAMIC is False


def test_memory_bound_case_is_judged_against_the_floor_measured_with_it():
    """The bandwidth floor of a memory-bound case is the probe timed in turn with it when
    there is one (the host's bandwidth drifts during a run), else the start-of-run one."""
    from dlcore.bench import machine

    probe = machine.FloorProbe(1, quick=True)
    probe.sample()
    probe.sample()
    assert probe.ok and len(probe.times) == 2 and probe.gbs() > 0
    probe.close()

    case = Case(key="k", name="k", group="activation", build=None, nbytes=1e9, target="bandwidth")
    impls = {"cython": {"ok": True, "median_s": 0.2}}
    m = rep._case_metrics(case, impls, {"bandwidth_gbs": 20.0}, floor_gbs=10.0)
    # 1 GB at 10 GB/s takes 0.1 s: 0.2 s is twice the floor; at the start's 20 GB/s, four times
    assert m["floor_gbs"] == 10.0 and m["floor_measured"] == "with the case"
    assert m["times_floor"] == pytest.approx(2.0) and m["times_floor_start"] == pytest.approx(4.0)
    m = rep._case_metrics(case, impls, {"bandwidth_gbs": 20.0})
    assert m["floor_gbs"] == 20.0 and m["times_floor"] == pytest.approx(4.0) and "times_floor_start" not in m
