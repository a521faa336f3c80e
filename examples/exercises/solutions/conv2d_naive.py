"""Reference solution of exercise 1 (examples/exercises/conv2d_naive.py): naive loops."""
import numpy as np

from dlcore import functional as F


def keep_columns(x, cols, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w):
    if cols is not None:
        unfolded = F.unfold(x, (kernel_h, kernel_w), (stride_h, stride_w), (pad_h, pad_w))
        cols[...] = unfolded.transpose(1, 0, 2).reshape(cols.shape)


def conv2d_forward(x, weight, bias, out, cols, stride_h, stride_w, pad_h, pad_w, n_threads):
    keep_columns(x, cols, weight.shape[2], weight.shape[3], stride_h, stride_w, pad_h, pad_w)
    N, F_out, OH, OW = out.shape
    KH, KW = weight.shape[2:]
    xpad = np.pad(x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)))
    for n in range(N):
        for f in range(F_out):
            for i in range(OH):
                for j in range(OW):
                    window = xpad[n, :, i * stride_h:i * stride_h + KH, j * stride_w:j * stride_w + KW]
                    out[n, f, i, j] = np.sum(window * weight[f])
            if bias is not None:
                out[n, f] += bias[f]


KERNELS = {"conv2d_forward": conv2d_forward}
