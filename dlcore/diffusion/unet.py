r"""A small U-Net noise predictor :math:`ε_θ(x_t, t)` with a sinusoidal time embedding.

Layout for ``channels=(C, 2C)`` on an ``H × W`` image (H, W even)::

    t ─ sinusoid(d) ─ Linear ─ SiLU ─ Linear ──► e   (fed to every ResBlock)
    x ─ Conv3x3(in→C) ─ ResBlock(C→C) ──────────────── h1 (skip) ─┐
                              └ Conv3x3 stride 2 (C→2C) ─ ResBlock(2C→2C) ─ Upsample×2 ─ Concat ─ ResBlock(3C→C) ─ SiLU ─ Conv3x3(C→in) ─► ε̂

Backward follows the same graph in reverse; where a value feeds two consumers (``h1``
feeds the downsampling conv *and* the skip; ``e`` feeds all three ResBlocks) the
gradients from both are added, which is the multivariate chain rule.
"""
import math

import numpy as np

from .. import nn
from .._checks import as_floating, check_int, describe

__all__ = ["ResBlock", "UNet", "timestep_embedding"]


def timestep_embedding(t, dim, max_period=10000.0):
    r"""Sinusoidal embedding of integer time steps (Vaswani et al.; Ho et al. use it for t).

    For :math:`k = 0..d/2-1`, :math:`ω_k = \text{max\_period}^{-k/(d/2)}` and
    :math:`e(t) = [\sin(t ω_0), …, \sin(t ω_{d/2-1}), \cos(t ω_0), …, \cos(t ω_{d/2-1})]`.
    No parameters, and t is an integer: there is nothing to differentiate.

    Returns float64 ``(N, dim)`` (``dim`` even).
    """
    dim = check_int(dim, "dim", minimum=2)
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    freqs = max_period ** (-np.arange(dim // 2, dtype=np.float64) / (dim // 2))
    angles = t[:, None] * freqs[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


class ResBlock(nn.Module):
    r"""A residual block conditioned on a time embedding ``e``.

    Forward:

    .. math::
        h = \text{conv}_1(\text{SiLU}(x)) + W_e\, \text{SiLU}(e) + b_e \quad(\text{added at every pixel}),\qquad
        y = \text{conv}_2(\text{SiLU}(h)) + \text{skip}(x)

    with ``skip`` the identity when ``in_channels == out_channels``, else a 1×1 conv.

    Backward (``δ = ∂L/∂y``): :math:`∂L/∂h = \text{SiLU}'^T(\text{conv}_2'^T δ)`;
    :math:`∂L/∂(W_e \text{SiLU}(e) + b_e) = \sum_{i,j} ∂L/∂h[:, :, i, j]` (the embedding was
    broadcast over the pixels, so its gradient is summed over them);
    :math:`∂L/∂x = \text{SiLU}'^T(\text{conv}_1'^T ∂L/∂h) + \text{skip}'^T δ`.
    ``backward`` returns ``(∂L/∂x, ∂L/∂e)``.
    """

    def __init__(self, in_channels, out_channels, emb_dim, dtype=np.float32):
        super().__init__()
        self.act1 = nn.SiLU()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, dtype=dtype)
        self.emb_act = nn.SiLU()
        self.emb_proj = nn.Linear(emb_dim, out_channels, dtype=dtype)
        self.act2 = nn.SiLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, dtype=dtype)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, dtype=dtype) if in_channels != out_channels else None

    def forward(self, x, e):
        x = self._as_input(x)
        h = self.conv1(self.act1(x)) + self.emb_proj(self.emb_act(e))[:, :, None, None]
        out = self.conv2(self.act2(h)) + (self.skip(x) if self.skip is not None else x)
        self._save_for_backward(out, None)
        return out

    def backward(self, grad_output):
        g, _ = self._saved_for_backward(grad_output)
        grad_x = np.array(self.skip.backward(g) if self.skip is not None else g, copy=True)
        grad_h = self.act2.backward(self.conv2.backward(g))
        grad_e = self.emb_act.backward(self.emb_proj.backward(grad_h.sum(axis=(2, 3))))
        grad_x += self.act1.backward(self.conv1.backward(grad_h))
        return grad_x, grad_e


class UNet(nn.Module):
    r"""A two-level U-Net that predicts the noise in :math:`x_t`: ``model(x_t, t) -> ε̂``.

    Args:
        in_channels (int): image channels (1 for the digits).
        channels (int): ``C``, the width at full resolution (``2C`` at half resolution).
        emb_dim (int): width of the time embedding (even).
        dtype: ``np.float32`` (default) or ``np.float64``.

    Shape:
        - ``x``: ``(N, in_channels, H, W)`` with H and W even; ``t``: int ``(N,)``.
        - Output: ``x``'s shape.

    Forward and backward are spelled out in :meth:`forward` / :meth:`backward`; see the
    module docstring for the graph. The output convolution starts at zero, so an
    untrained model predicts ε̂ = 0 (loss 1), a calm start.
    """

    def __init__(self, in_channels=1, channels=32, emb_dim=64, dtype=np.float32):
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", minimum=1)
        C = self.channels = check_int(channels, "channels", minimum=1)
        self.emb_dim = check_int(emb_dim, "emb_dim", minimum=2)
        if self.emb_dim % 2:
            raise ValueError(f"emb_dim must be even, got {emb_dim}")
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim, dtype=dtype), nn.SiLU(),
                                      nn.Linear(emb_dim, emb_dim, dtype=dtype))
        self.conv_in = nn.Conv2d(in_channels, C, 3, padding=1, dtype=dtype)
        self.down_block = ResBlock(C, C, emb_dim, dtype=dtype)
        self.downsample = nn.Conv2d(C, 2 * C, 3, stride=2, padding=1, dtype=dtype)
        self.mid_block = ResBlock(2 * C, 2 * C, emb_dim, dtype=dtype)
        self.upsample = nn.Upsample(scale_factor=2)
        self.concat = nn.Concat(dim=1)
        self.up_block = ResBlock(3 * C, C, emb_dim, dtype=dtype)
        self.act_out = nn.SiLU()
        self.conv_out = nn.Conv2d(C, in_channels, 3, padding=1, dtype=dtype)
        self.conv_out.weight.data[...] = 0
        self.conv_out.bias.data[...] = 0

    def forward(self, x, t):
        x = self._as_input(x, "x")
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(
                f"x must be (N, {self.in_channels}, H, W) with H and W even, got shape {x.shape}"
            )
        t = np.asarray(t)
        if t.dtype.kind not in "iu":  # the kind is a TypeError, the shape a ValueError (as for x)
            raise TypeError(f"t must be an int array of shape ({x.shape[0]},), got {describe(t)}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be an int array of shape ({x.shape[0]},), got {describe(t)}")
        e = self.time_mlp(timestep_embedding(t, self.emb_dim).astype(x.dtype))
        h1 = self.down_block(self.conv_in(x), e)
        h2 = self.mid_block(self.downsample(h1), e)
        h3 = self.up_block(self.concat(self.upsample(h2), h1), e)
        out = self.conv_out(self.act_out(h3))
        self._save_for_backward(out, None)
        return out

    def backward(self, grad_output):
        g, _ = self._saved_for_backward(grad_output)
        g = self.act_out.backward(self.conv_out.backward(g))
        g, grad_e = self.up_block.backward(g)
        grad_up, grad_h1 = self.concat.backward(g)           # split: upsampled path, skip
        g, grad_e2 = self.mid_block.backward(self.upsample.backward(grad_up))
        grad_h1 = grad_h1 + self.downsample.backward(g)      # h1 fed both the skip and the downsampling
        g, grad_e1 = self.down_block.backward(grad_h1)
        self.time_mlp.backward(grad_e + grad_e1 + grad_e2)   # e fed all three blocks
        return self.conv_in.backward(g)

    def extra_repr(self):
        return f"in_channels={self.in_channels}, channels={self.channels}, emb_dim={self.emb_dim}"
