"""dlcore.models: the classic learning rules and the network builders."""
import numpy as np
import pytest

import dlcore
from helpers import requires_sklearn
from dlcore import nn
from dlcore.data import StandardScaler, load_breast_cancer, load_digits, train_test_split
from dlcore.models import Adaline, LogisticRegression, Perceptron, SoftmaxRegression



def _separable(seed=0, n=200):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = (X @ np.array([1.0, -2.0]) + 0.3 > 0).astype(np.int64)
    margin = np.abs(X @ np.array([1.0, -2.0]) + 0.3) > 0.2       # a clear margin
    return X[margin], y[margin]


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")  # the dataset ships with scikit-learn
    X, y = load_digits()
    X_tr, X_te, y_tr, y_te = train_test_split(X.reshape(len(X), -1), y, seed=0, stratify=True)
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), scaler.transform(X_te), y_tr, y_te


@pytest.fixture(scope="module")
def cancer():
    pytest.importorskip("sklearn")  # the dataset ships with scikit-learn
    X, y = load_breast_cancer()
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, seed=0, stratify=True)
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), scaler.transform(X_te), y_tr, y_te


def test_perceptron_reaches_zero_training_errors_on_separable_data():
    X, y = _separable()
    model = Perceptron(seed=0).fit(X, y)
    assert model.errors_[-1] == 0 and len(model.errors_) < 100
    np.testing.assert_array_equal(model.predict(X), y)
    # the rule by hand on one mistake: w starts at 0, predicts 1 for z=0 >= 0, label 0
    one = Perceptron(lr=0.5, epochs=1, shuffle=False).fit(np.array([[2.0, 1.0]]), np.array([0]))
    np.testing.assert_allclose(one.coef_, [-1.0, -0.5])
    assert one.intercept_ == -0.5


def test_perceptron_keeps_arbitrary_binary_labels_and_rejects_multiclass():
    X, y = _separable(1)
    labels = np.where(y == 1, "yes", "no")
    model = Perceptron(seed=0).fit(X, labels)
    assert set(model.predict(X)) <= {"yes", "no"}
    assert model.score(X, labels) == 1.0
    with pytest.raises(ValueError, match="binary"):
        Perceptron().fit(X[:3], np.array([0, 1, 2]))
    with pytest.raises(RuntimeError, match="not fitted"):
        Perceptron().predict(X)


@pytest.mark.parametrize("unit_norm", [False, True])
def test_adaline_loss_decreases_monotonically_at_small_lr(cancer, unit_norm):
    X_tr, X_te, y_tr, y_te = cancer
    model = Adaline(lr=0.005, epochs=60, unit_norm=unit_norm).fit(X_tr, y_tr)
    losses = np.array(model.losses_)
    assert np.all(np.diff(losses) < 0)
    assert losses[-1] < losses[0]
    if not unit_norm:
        assert Adaline().fit(X_tr, y_tr).score(X_te, y_te) >= 0.95     # the defaults converge


def test_adaline_matches_least_squares_when_converged():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    model = Adaline(lr=0.05, epochs=2000).fit(X, y)
    Xa = np.hstack([X, np.ones((100, 1))])
    w = np.linalg.lstsq(Xa, y.astype(float), rcond=None)[0]
    np.testing.assert_allclose(np.append(model.coef_, model.intercept_), w, atol=1e-6)
    with pytest.raises(FloatingPointError, match="diverged"):
        Adaline(lr=10.0, epochs=2000).fit(X * 100, y)


def test_logistic_regression_breast_cancer_at_least_95(cancer):
    X_tr, X_te, y_tr, y_te = cancer
    model = LogisticRegression().fit(X_tr, y_tr)
    assert model.score(X_te, y_te) >= 0.95
    proba = model.predict_proba(X_te)
    assert proba.shape == (len(X_te), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict(X_te), proba.argmax(axis=1))
    assert model.losses_[-1] < model.losses_[0]


def test_logistic_regression_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(30, 3)), rng.integers(0, 2, 30)
    # one full-batch step from zero equals -lr * dJ/dw with dJ/dw = X^T (0.5 - y) / n
    model = LogisticRegression(lr=1.0, epochs=1).fit(X, y)
    np.testing.assert_allclose(model.coef_, -(X.T @ (0.5 - y)) / 30)
    np.testing.assert_allclose(model.intercept_, -np.mean(0.5 - y))


def test_softmax_regression_digits_at_least_95(digits):
    X_tr, X_te, y_tr, y_te = digits
    model = SoftmaxRegression(seed=0).fit(X_tr, y_tr)
    assert model.score(X_te, y_te) >= 0.95
    proba = model.predict_proba(X_te)
    assert proba.shape == (len(X_te), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    again = SoftmaxRegression(seed=0).fit(X_tr, y_tr)
    np.testing.assert_array_equal(again.coef_, model.coef_)


@requires_sklearn
def test_softmax_regression_takes_images_and_checks_labels():
    X, y = load_digits()
    model = SoftmaxRegression(epochs=2, seed=0).fit(X[:200], y[:200])
    assert model.predict(X[:5]).shape == (5,)
    with pytest.raises(TypeError, match="integer"):
        SoftmaxRegression().fit(X[:4], np.array([0.0, 1.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="features"):
        model.predict(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="1-D"):
        SoftmaxRegression().fit(X[:4], y[:3])


# ---- network builders ---------------------------------------------------------------------
def test_lenet5_is_the_api_sequential_with_61706_parameters():
    from dlcore.models import LeNet5

    model = LeNet5()
    assert isinstance(model, nn.Sequential) and len(model) == 12
    assert sum(p.size for p in model.parameters()) == 61706
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten",
                     "Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert model[0].weight.shape == (6, 1, 5, 5) and model[3].weight.shape == (16, 6, 5, 5)
    out = model(np.zeros((2, 1, 28, 28), np.float32))
    assert out.shape == (2, 10)
    assert model.backward(np.ones_like(out)).shape == (2, 1, 28, 28)
    assert LeNet5(3, 5)(np.zeros((1, 3, 28, 28), np.float32)).shape == (1, 5)


def test_mlp_autoencoder_resnet_shapes_and_gradients():
    from dlcore.models import MLP, Autoencoder, ResNet

    x = np.random.default_rng(0).random((3, 1, 8, 8)).astype(np.float32)
    mlp = MLP([64, 16, 10], activation="tanh", dropout=0.1, batch_norm=True)
    assert mlp(x).shape == (3, 10)
    assert mlp.backward(np.ones((3, 10), np.float32)).shape == (3, 1, 8, 8)
    with pytest.raises(ValueError, match="activation"):
        MLP([4, 2], activation="cube")
    ae = Autoencoder([64, 16, 4])
    z = ae.encode(x)
    assert z.shape == (3, 4)
    rec = ae(x)
    assert rec.shape == (3, 64) and 0 <= rec.min() and rec.max() <= 1
    assert ae.backward(np.ones_like(rec)).shape == (3, 1, 8, 8)
    assert {"encoder", "decoder"} <= {name for name, _ in ae.named_children()}
    net = ResNet(channels=(4, 8), blocks=(1, 1))
    out = net(x)
    assert out.shape == (3, 10)
    assert net.backward(np.ones_like(out)).shape == x.shape
    assert any(isinstance(m, nn.Residual) for m in net.modules())


def test_global_avg_pool_gradcheck():
    from dlcore.models import GlobalAvgPool2d

    x = np.random.default_rng(1).normal(size=(2, 3, 4, 5))
    assert dlcore.gradcheck(GlobalAvgPool2d(), x)
    np.testing.assert_allclose(GlobalAvgPool2d()(x), x.mean(axis=(2, 3)))


def test_small_resnet_gradcheck():
    from dlcore.models import ResNet

    # The smallest two-stage net (a strided block with a 1x1 shortcut); every other layer
    # has its own gradcheck in the nn tests, so this only checks the wiring.
    net = ResNet(channels=(1, 2), blocks=(1, 1), num_classes=2).double()
    x = np.random.default_rng(3).normal(size=(2, 1, 4, 4))
    assert dlcore.gradcheck(net, x, atol=1e-4)
