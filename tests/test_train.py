"""dlcore.train: the Trainer loop, History, callbacks, penalties, progress, determinism."""
import io
import math
import sys

import numpy as np
import pytest

import dlcore
from helpers import requires_sklearn
from dlcore import nn, optim
from dlcore.data import StandardScaler, load_digits, train_test_split
from dlcore.models import MLP, Autoencoder, LeNet5
from dlcore.train import (
    Callback,
    EarlyStopping,
    History,
    LambdaCallback,
    ModelCheckpoint,
    TerminateOnNaN,
    Trainer,
    evaluate,
    fit,
    load_checkpoint,
    predict,
)



@pytest.fixture(scope="module")
def digits64():
    pytest.importorskip("sklearn")  # the dataset ships with scikit-learn
    X, y = load_digits()
    X = X.reshape(len(X), -1)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, seed=0, stratify=True)
    scaler = StandardScaler().fit(X_tr)
    return (scaler.transform(X_tr).astype(np.float32), y_tr,
            scaler.transform(X_te).astype(np.float32), y_te)


def _small(digits64, n=256):
    X_tr, y_tr, X_te, y_te = digits64
    return X_tr[:n], y_tr[:n], X_te[:n], y_te[:n]


def _trainer(model=None, lr=0.05, **kwargs):
    model = model if model is not None else MLP([64, 32, 10])
    kwargs.setdefault("progress", False)
    return Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=lr), **kwargs)


def _states_equal(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ---- the loop and History ----------------------------------------------------------------
def test_fit_records_history_and_learns(digits64):
    X_tr, y_tr, X_te, y_te = _small(digits64)
    dlcore.manual_seed(0)
    trainer = _trainer(lr=0.1)
    history = trainer.fit(X_tr, y_tr, epochs=4, batch_size=32, validation_data=(X_te, y_te), seed=0)
    assert isinstance(history, History) and len(history) == 4 and history.epoch == [1, 2, 3, 4]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"):
        assert len(history[key]) == 4, key
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] > 0.6
    assert all(t > 0 for t in history["time"])
    result = trainer.evaluate(X_te, y_te)
    assert result["accuracy"] == pytest.approx(history["val_accuracy"][-1])
    assert result["loss"] == pytest.approx(history["val_loss"][-1], rel=1e-5)
    out = trainer.predict(X_te[:10])
    assert out.shape == (10, 10)
    np.testing.assert_array_equal(trainer.predict_classes(X_te[:10]), out.argmax(1))
    with pytest.raises(KeyError, match="val_f1"):
        history["val_f1"]


def test_validation_split_and_input_errors(digits64):
    X_tr, y_tr, _, _ = _small(digits64, 100)
    history = _trainer().fit(X_tr, y_tr, epochs=1, validation_split=0.2)
    assert "val_loss" in history
    with pytest.raises(ValueError, match="as many samples"):
        _trainer().fit(X_tr, y_tr[:-1], epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        _trainer().fit(X_tr, y_tr, epochs=0)
    with pytest.raises(TypeError, match="Module"):
        Trainer("not a model")
    with pytest.raises(TypeError, match="Callback"):
        _trainer(callbacks=[print])


def test_fit_function_evaluate_and_predict_shorthands(digits64):
    X_tr, y_tr, X_te, y_te = _small(digits64, 64)
    model = MLP([64, 10])
    history = fit(model, X_tr, y_tr, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1),
                  epochs=2, progress=False)
    assert len(history) == 2
    assert set(evaluate(model, X_te, y_te)) == {"loss", "accuracy"}
    model.train()
    assert predict(model, X_te, batch_size=7).shape == (64, 10)
    assert model.training            # predict restores the mode


def test_same_seed_same_run(digits64):
    X_tr, y_tr, _, _ = _small(digits64, 128)
    runs = []
    for _ in range(2):
        dlcore.manual_seed(3)
        trainer = _trainer()
        trainer.fit(X_tr, y_tr, epochs=2, seed=1)
        runs.append(trainer.model.state_dict())
    assert _states_equal(*runs)


# ---- penalties -----------------------------------------------------------------------------
def test_l2_and_l1_penalties_add_their_gradients_to_weights_only(digits64):
    X_tr, y_tr, _, _ = _small(digits64, 32)
    lr, lam = 0.1, 0.5
    results = {}
    for name, kwargs in (("plain", {}), ("l2", {"l2": lam}), ("l1", {"l1": lam})):
        dlcore.manual_seed(0)
        model = MLP([64, 10], flatten=False)
        start = model.state_dict()
        trainer = _trainer(model, lr=lr, **kwargs)
        loss, _ = trainer.train_step(X_tr, y_tr)
        results[name] = (start, model.state_dict(), loss)
    start, plain, plain_loss = results["plain"]
    _, l2, l2_loss = results["l2"]
    _, l1, l1_loss = results["l1"]
    np.testing.assert_allclose(l2["0.weight"], plain["0.weight"] - lr * lam * start["0.weight"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(l1["0.weight"], plain["0.weight"] - lr * lam * np.sign(start["0.weight"]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(l2["0.bias"], plain["0.bias"])      # biases are not penalized
    w = start["0.weight"].astype(np.float64)
    assert l2_loss == pytest.approx(plain_loss + 0.5 * lam * np.sum(w ** 2), rel=1e-5)
    assert l1_loss == pytest.approx(plain_loss + lam * np.abs(w).sum(), rel=1e-5)


# ---- callbacks ------------------------------------------------------------------------------
class _FakeTrainer:
    def __init__(self):
        self.model = MLP([2, 2])
        self.stop_training = False
        self.messages = []

    def _message(self, text):
        self.messages.append(text)


def test_early_stopping_logic_patience_and_min_delta():
    es = EarlyStopping(patience=2, min_delta=0.1)
    t = _FakeTrainer()
    es.on_train_begin(t)
    for epoch, value in enumerate([1.0, 0.95, 0.5, 0.45, 0.44], 1):   # 0.95, 0.45, 0.44: < min_delta gain
        es.on_epoch_end(t, epoch, {"val_loss": value})
        if t.stop_training:
            break
    assert t.stop_training and es.stopped_epoch == 5 and es.best_epoch == 3 and es.best == 0.5
    assert "epoch 5" in t.messages[0]
    acc = EarlyStopping(monitor="val_accuracy", patience=1)
    assert acc.mode == "max"
    with pytest.raises(ValueError, match="validation_data"):
        es.on_epoch_end(t, 1, {"loss": 1.0})


def test_early_stopping_stops_and_restores_best_weights(digits64):
    X_tr, y_tr, _, _ = _small(digits64, 64)
    snapshots = {}
    keep = LambdaCallback(on_epoch_end=lambda tr, e, logs: snapshots.__setitem__(e, tr.model.state_dict()))
    # mode="max" on a falling loss: epoch 1 stays the best, so it stops after 1 + patience epochs
    es = EarlyStopping(monitor="loss", mode="max", patience=2, verbose=False)
    trainer = _trainer(callbacks=[keep, es])
    history = trainer.fit(X_tr, y_tr, epochs=10)
    assert len(history) == 3 and es.stopped_epoch == 3 and es.best_epoch == 1
    assert _states_equal(trainer.model.state_dict(), snapshots[1])
    assert not _states_equal(snapshots[3], snapshots[1])


def test_early_stopping_restores_best_weights_when_epochs_run_out(digits64):
    X_tr, y_tr, _, _ = _small(digits64, 64)
    snapshots = {}
    keep = LambdaCallback(on_epoch_end=lambda tr, e, logs: snapshots.__setitem__(e, tr.model.state_dict()))
    es = EarlyStopping(monitor="loss", mode="max", patience=50, verbose=False)
    trainer = _trainer(callbacks=[keep, es])
    trainer.fit(X_tr, y_tr, epochs=3)
    assert es.stopped_epoch == 0
    assert _states_equal(trainer.model.state_dict(), snapshots[1])
    no_restore = EarlyStopping(monitor="loss", mode="max", patience=50, restore_best_weights=False)
    trainer = _trainer(callbacks=[keep, no_restore])
    trainer.fit(X_tr, y_tr, epochs=2)
    assert _states_equal(trainer.model.state_dict(), snapshots[2])


def test_model_checkpoint_writes_loadable_files(tmp_path, digits64):
    X_tr, y_tr, X_te, y_te = _small(digits64, 64)
    every = ModelCheckpoint(tmp_path / "ep{epoch}.npz", save_optimizer=True)
    best = ModelCheckpoint(str(tmp_path / "best.npz"), monitor="val_accuracy", save_best_only=True)
    trainer = _trainer(callbacks=[every, best])
    trainer.fit(X_tr, y_tr, epochs=3, validation_data=(X_te, y_te))
    assert [p.split("/")[-1] for p in every.saved] == ["ep1.npz", "ep2.npz", "ep3.npz"]
    fresh = MLP([64, 32, 10])
    payload = load_checkpoint(every.saved[-1], fresh, optim.SGD(fresh.parameters(), lr=1.0))
    assert payload["epoch"] == 3 and "val_loss" in payload["logs"]
    assert _states_equal(fresh.state_dict(), trainer.model.state_dict())
    assert 1 <= len(best.saved) <= 3 and all(p.endswith("best.npz") for p in best.saved)
    assert not list(tmp_path.glob("*.tmp*"))       # atomic writes leave no temporaries
    with pytest.raises(ValueError, match="not a dlcore checkpoint"):
        dlcore.save({"x": np.zeros(2)}, tmp_path / "other.npz")
        load_checkpoint(tmp_path / "other.npz", fresh)


def test_terminate_on_nan_names_epoch_and_batch(digits64):
    X_tr, y_tr, _, _ = _small(digits64, 100)
    X_bad = X_tr.copy()
    X_bad[40] = np.nan                  # sample 40 is in batch 2 (batch_size 32, no shuffle)
    stream = io.StringIO()
    cb = TerminateOnNaN()
    trainer = _trainer(callbacks=[cb], stream=stream)
    with np.errstate(invalid="ignore", over="ignore"):
        history = trainer.fit(X_bad, y_tr, epochs=3, shuffle=False)
    assert trainer.stop_training and len(history) == 0
    assert "epoch 1, batch 2" in cb.message and "nan" in cb.message
    assert cb.message in stream.getvalue()


def test_custom_callback_hooks_order(digits64):
    X_tr, y_tr, _, _ = _small(digits64, 40)
    calls = []

    class Recorder(Callback):
        def on_train_begin(self, trainer):
            calls.append("begin")

        def on_epoch_begin(self, trainer, epoch):
            calls.append(f"e{epoch}")

        def on_batch_end(self, trainer, epoch, batch, logs):
            calls.append(f"b{batch}")

        def on_epoch_end(self, trainer, epoch, logs):
            calls.append(f"end{epoch}")

        def on_train_end(self, trainer):
            calls.append("finish")

    _trainer(callbacks=[Recorder()]).fit(X_tr, y_tr, epochs=2, batch_size=32)
    assert calls == ["begin", "e1", "b1", "b2", "end1", "e2", "b1", "b2", "end2", "finish"]


# ---- progress display and plotting ----------------------------------------------------------
def test_plain_progress_fallback_without_tqdm(digits64, monkeypatch):
    X_tr, y_tr, _, _ = _small(digits64, 64)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)      # import fails -> plain text
    stream = io.StringIO()
    _trainer(progress=True, stream=stream).fit(X_tr, y_tr, epochs=2)
    text = stream.getvalue()
    assert "Epoch 1/2" in text and "Epoch 2/2" in text
    assert "loss=" in text and "acc" in text and "samples/s" in text
    quiet = io.StringIO()
    _trainer(progress=False, stream=quiet).fit(X_tr, y_tr, epochs=1)
    assert quiet.getvalue() == ""


def test_tqdm_progress_and_history_plot(digits64, tmp_path):
    pytest.importorskip("tqdm")
    pytest.importorskip("matplotlib")
    X_tr, y_tr, X_te, y_te = _small(digits64, 64)
    stream = io.StringIO()
    history = _trainer(progress=True, stream=stream).fit(X_tr, y_tr, epochs=2, validation_data=(X_te, y_te))
    assert "samples/s" in stream.getvalue() and "val_loss" in stream.getvalue()
    fig = history.plot(path=tmp_path / "history.png")
    assert (tmp_path / "history.png").stat().st_size > 0
    import matplotlib.pyplot as plt

    plt.close(fig)


# ---- other models through the loop ----------------------------------------------------------
def test_autoencoder_reconstruction_improves(digits64):
    X, _ = load_digits()
    X = X[:256].reshape(256, -1)
    dlcore.manual_seed(0)
    ae = Autoencoder([64, 32, 8])
    trainer = Trainer(ae, nn.MSELoss(), optim.Adam(ae.parameters(), lr=3e-3), progress=False)
    history = trainer.fit(X, X, epochs=8, batch_size=32, seed=0)
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    assert "accuracy" not in history


@pytest.mark.slow
def test_mlp_on_digits_reaches_97_percent(digits64):
    X_tr, y_tr, X_te, y_te = digits64
    dlcore.manual_seed(0)
    model = MLP([64, 128, 64, 10])
    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-3), progress=False)
    trainer.fit(X_tr, y_tr, epochs=20, batch_size=32, seed=0)
    assert trainer.evaluate(X_te, y_te)["accuracy"] >= 0.97


# ---- same seeded run: both backends, 1 and 2 threads ----------------------------------------
def _tiny_lenet_run():
    X, y = load_digits(size=28)
    X, y = X[:64], y[:64]
    dlcore.manual_seed(7)
    model = LeNet5()
    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=2e-3), progress=False)
    history = trainer.fit(X, y, epochs=2, batch_size=16, seed=7)
    return history["loss"], trainer.evaluate(X, y)["accuracy"]


@requires_sklearn
@pytest.mark.slow
def test_same_seeded_training_same_accuracy_on_backends_and_thread_counts():
    results = {}
    for backend in dlcore.available_backends():
        for threads in (1, 2):
            previous = dlcore.get_num_threads()
            dlcore.set_num_threads(threads)
            try:
                with dlcore.use_backend(backend):
                    results[(backend, threads)] = _tiny_lenet_run()
            finally:
                dlcore.set_num_threads(previous)
    (ref_losses, ref_acc), *others = results.values()
    for key, (losses, acc) in results.items():
        assert acc == ref_acc, key
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-3, err_msg=str(key))
    assert math.isfinite(ref_losses[-1])


# ---- shorthands forward by signature; explicit accuracy; one penalty mechanism ---------------
def _blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = (rng.standard_normal((n, 4)) + 2.0 * y[:, None]).astype(np.float32)
    return X, y


def test_fit_forwards_every_trainer_and_fit_keyword():
    X, y = _blobs()
    model = MLP([4, 8, 3])
    history = fit(model, X, y, epochs=2, batch_size=16, progress=False, blas_threads=1, accuracy=None,
                  shuffle=False, validation_split=0.25)
    assert "accuracy" not in history and "val_loss" in history
    with pytest.raises(TypeError, match="epoch_count"):
        fit(model, X, y, epoch_count=3)


def test_evaluate_is_a_plain_function_with_explicit_accuracy():
    X, y = _blobs()
    model = MLP([4, 8, 3])
    out = predict(model, X)
    result = evaluate(model, X, y)
    assert result["accuracy"] == pytest.approx(np.mean(out.argmax(1) == y))
    assert set(evaluate(model, X, y, accuracy=None)) == {"loss"}
    assert evaluate(model, X, y, accuracy=lambda o, t: len(t))["accuracy"] == 1.0
    with pytest.raises(ValueError, match="accuracy must be"):
        evaluate(model, X, y, accuracy="top5")
    # a binary model: the rule follows the loss (logit threshold 0), not the output's shape
    binary = nn.Linear(4, 1)
    yb = (y > 0).astype(np.float32).reshape(-1, 1)
    logits = predict(binary, X)
    got = evaluate(binary, X, yb, nn.BCEWithLogitsLoss())["accuracy"]
    assert got == pytest.approx(np.mean((logits > 0) == (yb > 0.5)))
    with pytest.raises(ValueError, match="argmax"):
        evaluate(binary, X, yb, nn.BCEWithLogitsLoss(), accuracy="argmax")


def test_l2_shorthand_is_the_optimizers_weight_decay_on_weights_only():
    X, y = _blobs()
    runs = {}
    for name in ("shorthand", "groups"):
        dlcore.manual_seed(0)
        model = MLP([4, 8, 3])
        if name == "shorthand":
            trainer = Trainer(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=0.01), l2=0.1,
                              progress=False)
        else:
            weights = [p for p in model.parameters() if p.ndim >= 2]
            others = [p for p in model.parameters() if p.ndim < 2]
            opt = optim.Adam([{"params": others}, {"params": weights, "weight_decay": 0.1}], lr=0.01)
            trainer = Trainer(model, nn.CrossEntropyLoss(), opt, progress=False)
        trainer.fit(X, y, epochs=2, batch_size=16, seed=0)
        runs[name] = model.state_dict()
    assert _states_equal(runs["shorthand"], runs["groups"])
    model = MLP([4, 3])
    with pytest.raises(ValueError, match="AdamW"):
        Trainer(model, optimizer=optim.AdamW(model.parameters()), l2=0.1)


def test_train_step_skips_the_first_layers_input_gradient():
    """The batch is data: the Trainer asks the first Conv2d for no dL/dx (as torch), and the
    parameter gradients are those of a full backward."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 4)
    model = LeNet5()
    asked = []
    first = model[0]
    plain_backward = first.backward
    first.backward = lambda g, input_grad=None: asked.append(input_grad) or plain_backward(g, input_grad)
    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.0))
    trainer.train_step(x, y)
    assert asked == [False]
    grads = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(model(x), y)
    assert model.backward(loss_fn.backward()) is not None  # the full backward, dL/dx included
    for mine, full in zip(grads, (p.grad for p in model.parameters())):
        np.testing.assert_array_equal(mine, full)


def test_auto_blas_threads_follow_the_backend():
    """One pool owns the cores: BLAS gets one thread on a compiled backend, no limit on NumPy's."""
    from dlcore.train import resolve_blas_threads

    with dlcore.use_backend("numpy"):
        assert resolve_blas_threads("auto") is None
    for name in dlcore.available_backends():
        if name != "numpy":
            with dlcore.use_backend(name):
                assert resolve_blas_threads("auto") == 1
    assert resolve_blas_threads(3) == 3 and resolve_blas_threads(None) is None
