"""dlcore.export: to_torch and to_onnx give dlcore's outputs on the bundled models."""
import numpy as np
import pytest

import dlcore
from dlcore import models, nn
from dlcore.export import to_onnx, to_torch


def trained_stats(model, x, steps=3):
    """A few training-mode forwards, so BatchNorm's running statistics are not 0 and 1."""
    model.train()
    for i in range(steps):
        model(x * (1 + i) + i)
    return model


def bundled(dtype=np.float32):
    """(name, model, input) for LeNet-5, the MLP, the autoencoder and the ResNet."""
    dlcore.manual_seed(0)
    rng = np.random.default_rng(0)
    return [
        ("lenet5", models.LeNet5(dtype=dtype), rng.standard_normal((4, 1, 28, 28)).astype(dtype)),
        ("mlp", models.MLP([64, 32, 16, 10], batch_norm=True, dropout=0.2, dtype=dtype),
         rng.standard_normal((6, 1, 8, 8)).astype(dtype)),
        ("autoencoder", models.Autoencoder([64, 32, 8], dtype=dtype), rng.random((6, 64)).astype(dtype)),
        ("resnet", models.ResNet(channels=(8, 16), blocks=(2, 1), dtype=dtype),
         rng.standard_normal((3, 1, 28, 28)).astype(dtype)),
    ]


def every_layer():
    dlcore.manual_seed(1)
    model = nn.Sequential(
        nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1),
        nn.AvgPool2d(3, 2, 1), nn.InstanceNorm2d(3, affine=True), nn.SiLU(), nn.LeakyReLU(0.1),
        nn.Conv2d(3, 4, (3, 2), stride=(1, 2), padding=(1, 0)), nn.BatchNorm2d(4), nn.Sigmoid(),
        nn.MaxPool2d(2, 1, 1), nn.Tanh(), nn.Flatten(2), nn.Linear(15, 5), nn.Identity(),
        nn.Residual(nn.Sequential(nn.Linear(5, 5), nn.ReLU())), nn.LogSoftmax(-1),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(20, 6), nn.Softmax(1))
    x = np.random.default_rng(1).standard_normal((2, 2, 4, 4)).astype(np.float32)
    return model, x


@pytest.mark.torch
@pytest.mark.parametrize("index", range(4))
def test_to_torch_equals_dlcore_on_the_bundled_models(index):
    torch = pytest.importorskip("torch")
    name, model, x = bundled()[index]
    trained_stats(model, x)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        tmodel = to_torch(model)
        assert tmodel.training == model.training
        if name == "mlp" and mode == "train":
            continue  # dropout draws differ between the two libraries
        np.testing.assert_allclose(tmodel(torch.from_numpy(x)).detach().numpy(), model(x), atol=1e-5, rtol=0)
    assert set(tmodel.state_dict()) >= set(model.state_dict())


@pytest.mark.torch
def test_to_torch_covers_every_layer_and_float64():
    torch = pytest.importorskip("torch")
    model, x = every_layer()
    model.eval()
    np.testing.assert_allclose(to_torch(model)(torch.from_numpy(x)).detach().numpy(), model(x), atol=1e-5)
    model.double()
    tmodel = to_torch(model)
    assert next(tmodel.parameters()).dtype == torch.float64
    np.testing.assert_allclose(tmodel(torch.from_numpy(x.astype(np.float64))).detach().numpy(),
                               model(x.astype(np.float64)), atol=1e-12)


@pytest.mark.torch
def test_to_torch_names_an_unsupported_layer():
    pytest.importorskip("torch")

    class Mine(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="Mine at '1'"):
        to_torch(nn.Sequential(nn.ReLU(), Mine()))


@pytest.mark.parametrize("index", range(4))
def test_to_onnx_runs_to_dlcore_outputs(index, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    name, model, x = bundled()[index]
    trained_stats(model, x)
    model.train()
    path = tmp_path / f"{name}.onnx"
    proto = to_onnx(model, x[:1], path)
    assert model.training, "to_onnx must restore the train/eval mode"
    onnx.checker.check_model(onnx.load(str(path)))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    model.eval()
    got = ort.InferenceSession(str(path)).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, model(x), atol=1e-5, rtol=0)


def test_to_onnx_covers_every_layer(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model, x = every_layer()
    trained_stats(model, x)
    model.eval()
    to_onnx(model, x, tmp_path / "all.onnx")
    got = ort.InferenceSession(str(tmp_path / "all.onnx")).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, model(x), atol=1e-5, rtol=0)


def test_to_onnx_rejects_what_it_cannot_translate(tmp_path):
    pytest.importorskip("onnx")
    with pytest.raises(TypeError, match="return_indices"):
        to_onnx(nn.Sequential(nn.MaxPool2d(2, return_indices=True)), np.zeros((1, 1, 4, 4), np.float32),
                tmp_path / "x.onnx")
    with pytest.raises(TypeError, match="sample_input"):
        to_onnx(models.MLP([4, 2]), np.zeros((1, 4), np.int64), tmp_path / "x.onnx")


def test_upsample_exports_to_torch_and_onnx(tmp_path):
    if not hasattr(nn, "Upsample"):
        pytest.skip("this dlcore has no nn.Upsample")
    dlcore.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Upsample(scale_factor=(2, 3)), nn.ReLU())
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 4)).astype(np.float32)
    expected = model(x)
    assert expected.shape == (2, 3, 6, 12)
    torch = pytest.importorskip("torch")
    np.testing.assert_allclose(to_torch(model)(torch.from_numpy(x)).detach().numpy(), expected, atol=1e-5)
    ort = pytest.importorskip("onnxruntime")
    to_onnx(model, x, tmp_path / "up.onnx")
    got = ort.InferenceSession(str(tmp_path / "up.onnx")).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def dcgan():
    """(name, model, input) for DCGAN's generator and discriminator (small widths)."""
    dlcore.manual_seed(0)
    rng = np.random.default_rng(0)
    return [
        ("generator", models.DCGANGenerator(latent_dim=8, channels=4),
         rng.standard_normal((3, 8, 1, 1)).astype(np.float32)),
        ("discriminator", models.DCGANDiscriminator(channels=4),
         rng.uniform(-1, 1, (3, 1, 28, 28)).astype(np.float32)),
    ]


@pytest.mark.torch
@pytest.mark.parametrize("index", range(2))
def test_to_torch_equals_dlcore_on_dcgan(index):
    torch = pytest.importorskip("torch")
    name, model, x = dcgan()[index]
    trained_stats(model, x)
    for mode in ("train", "eval"):  # BatchNorm: batch statistics, then running ones
        getattr(model, mode)()
        tmodel = to_torch(model)
        np.testing.assert_allclose(tmodel(torch.from_numpy(x)).detach().numpy(), model(x), atol=1e-5, rtol=0)
    assert model(x).shape == ((3, 1, 28, 28) if name == "generator" else (3, 1))


@pytest.mark.parametrize("index", range(2))
def test_to_onnx_runs_dcgan_to_dlcore_outputs(index, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    name, model, x = dcgan()[index]
    trained_stats(model, x)
    model.eval()
    to_onnx(model, x[:1], tmp_path / f"{name}.onnx")
    onnx.checker.check_model(onnx.load(str(tmp_path / f"{name}.onnx")))
    got = ort.InferenceSession(str(tmp_path / f"{name}.onnx")).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, model(x), atol=1e-5, rtol=0)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_to_torch_equals_dlcore_on_the_vae(dtype):
    """Same ε on both sides: the negative ELBO, its gradients (torch's autograd against
    dlcore's hand-written backward, x's included), the reconstruction and the decoder."""
    torch = pytest.importorskip("torch")
    dlcore.manual_seed(0)
    vae = models.VAE(image_shape=(1, 8, 8), hidden=16, latent_dim=3, dtype=dtype)
    x = np.random.default_rng(0).random((4, 1, 8, 8)).astype(dtype)
    tvae = to_torch(vae)
    assert set(tvae.state_dict()) == set(vae.state_dict())
    dlcore.manual_seed(5)
    eps = dlcore._random.generator().standard_normal((4, 3)).astype(dtype)  # the draw vae(x) makes
    dlcore.manual_seed(5)
    vae.zero_grad()
    loss = vae(x)
    grad_x = vae.backward(np.full(4, 0.25, dtype))
    tx = torch.from_numpy(x).requires_grad_()
    tloss = tvae(tx, torch.from_numpy(eps))
    tloss.mean().backward()
    atol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(tloss.detach().numpy(), loss, atol=atol, rtol=1e-6)
    np.testing.assert_allclose(tx.grad.numpy(), grad_x, atol=atol, rtol=0)
    tparams = dict(tvae.named_parameters())
    for name, p in vae.named_parameters():
        np.testing.assert_allclose(tparams[name].grad.numpy(), p.grad, atol=atol, rtol=0, err_msg=name)
    np.testing.assert_allclose(tvae.reconstruct(torch.from_numpy(x)).detach().numpy(), vae.reconstruct(x),
                               atol=atol, rtol=0)
    z = np.random.default_rng(1).standard_normal((2, 3)).astype(dtype)
    np.testing.assert_allclose(tvae.decode(torch.from_numpy(z)).detach().numpy(), vae.decode(z), atol=atol, rtol=0)
    assert tuple(tvae.sample(2).shape) == (2, 1, 8, 8)
