"""Reference solution of exercise 1 (examples/exercises/conv2d_naive.py): naive loops."""
import numpy as np


def conv2d_forward(x, weight, bias, out, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
                   groups, n_threads):
    N, F_out, OH, OW = out.shape
    Cg, KH, KW = weight.shape[1:]
    span_h, span_w = dilation_h * (KH - 1) + 1, dilation_w * (KW - 1) + 1  # a window's extent
    xpad = np.pad(x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)))
    for n in range(N):
        for f in range(F_out):
            g = f // (F_out // groups)
            channels = xpad[n, g * Cg:(g + 1) * Cg]
            for i in range(OH):
                for j in range(OW):
                    top, left = i * stride_h, j * stride_w
                    window = channels[:, top:top + span_h:dilation_h, left:left + span_w:dilation_w]
                    out[n, f, i, j] = np.sum(window * weight[f])
            if bias is not None:
                out[n, f] += bias[f]


KERNELS = {"conv2d_forward": conv2d_forward}
