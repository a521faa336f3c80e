"""compare_with_torch locates a planted difference at the right layer."""
import numpy as np
import pytest

import dlcore
from dlcore import models, nn
from dlcore.compare import compare_with_torch

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def resnet_pair(momentum_of_torch_bn=None):
    """A dlcore ResNet and an independently built torch model of the same architecture
    (its own random weights: compare_with_torch copies dlcore's across)."""
    from dlcore.export import to_torch

    dlcore.manual_seed(0)
    model = models.ResNet(channels=(4, 8), blocks=(1, 1))
    dlcore.manual_seed(1)
    tmodel = to_torch(models.ResNet(channels=(4, 8), blocks=(1, 1)))
    if momentum_of_torch_bn is not None:
        name, bn = momentum_of_torch_bn
        dict(tmodel.named_modules())[name].momentum = bn
    return model, tmodel


def inputs():
    rng = np.random.default_rng(0)
    return rng.standard_normal((4, 1, 12, 12)).astype(np.float32), rng.integers(0, 10, 4)


def test_identical_models_agree_everywhere():
    model, tmodel = resnet_pair()
    x, y = inputs()
    result = compare_with_torch(model, tmodel, x, y, nn.CrossEntropyLoss())
    assert result.ok, str(result)
    assert result.loss < 1e-5
    assert [r["layer"] for r in result.rows][:3] == ["0", "1", "2"]
    assert all(r["output"] is not None and r["grad_input"] is not None for r in result.rows)


@pytest.mark.parametrize("layer", ["1", "3.block.4", "5.shortcut.1"])
def test_finds_a_planted_batchnorm_momentum_at_that_layer(layer):
    model, tmodel = resnet_pair((layer, 0.3))
    x, y = inputs()
    result = compare_with_torch(model, tmodel, x, y, nn.CrossEntropyLoss())
    assert not result.ok
    assert result.first_divergence["layer"] == layer
    assert result.first_divergence["what"] == "buffer running_mean"
    assert f"first divergence: layer '{layer}' (BatchNorm2d)" in str(result)


def test_finds_a_forward_difference_at_that_layer():
    dlcore.manual_seed(0)
    model = models.MLP([6, 5, 4, 3], activation="leaky_relu")
    tmodel = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 5), torch.nn.LeakyReLU(0.01),
                                 torch.nn.Linear(5, 4), torch.nn.LeakyReLU(0.2), torch.nn.Linear(4, 3))
    x = np.random.default_rng(1).standard_normal((8, 6)).astype(np.float32)
    result = compare_with_torch(model, tmodel, x)
    assert result.first_divergence["layer"] == "4" and result.first_divergence["what"] == "output"


def test_finds_a_backward_only_difference_at_that_layer():
    class BadReLU(nn.ReLU):
        def backward(self, grad_output):
            return super().backward(grad_output) * 1.01  # planted: 1% too large

    dlcore.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), BadReLU(), nn.Linear(4, 3))
    tmodel = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 4), torch.nn.ReLU(),
                                 torch.nn.Linear(4, 3))
    x = np.random.default_rng(2).standard_normal((8, 6)).astype(np.float32)
    result = compare_with_torch(model, tmodel, x)
    assert result.first_divergence["layer"] == "3", str(result)
    assert result.first_divergence["what"] == "input gradient"
    # forward outputs agree everywhere; earlier layers inherit the bad gradient
    assert all(r["output"] < 1e-5 for r in result.rows)
    assert result.rows[0]["grad_params"] > 1e-4


def test_float64_and_tolerances():
    model, tmodel = resnet_pair()
    model.double()
    x, _ = inputs()
    result = compare_with_torch(model, tmodel, x.astype(np.float64), atol=1e-10, rtol=1e-8)
    assert result.ok, str(result)


def test_names_a_parameter_missing_from_the_torch_model():
    model = nn.Sequential(nn.Linear(3, 2))
    tmodel = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(3, 2))
    with pytest.raises(ValueError, match="'0.weight'"):
        compare_with_torch(model, tmodel, np.zeros((1, 3), np.float32))


def test_leaves_both_models_as_they_were():
    model, tmodel = resnet_pair()
    before = {k: v.clone() for k, v in tmodel.state_dict().items()}
    x, _ = inputs()
    compare_with_torch(model, tmodel, x)
    assert all(torch.equal(before[k], v) for k, v in tmodel.state_dict().items())
    assert "forward" not in model[0].__dict__  # the recording wrappers are gone
