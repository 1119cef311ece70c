#!/usr/bin/env python3
"""Train a small MLP on scikit-learn's bundled 8x8 digits with NumPy + lossx.

Everything but the loss is hand-written NumPy: a 64-128-10 ReLU network, its
backward pass and an Adam optimiser. lossx supplies the loss AND its gradient
in one fused call:

    loss, dlogits = lossx.cross_entropy(logits, labels, return_grad=True)

`dlogits` is d(mean loss)/d(logits), i.e. (softmax - onehot) / batch, so the
backward pass starts from it directly. The data set ships with scikit-learn
(no download). Runs in a few seconds and ends with a small speed comparison of
the fused call against the plain NumPy formula.

    python examples/digits_mlp.py [--epochs 30] [--seed 0]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits

import lossx


def init_params(rng, sizes):
    """He initialisation for ReLU layers."""
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        W = rng.standard_normal((fan_in, fan_out)).astype(np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        params += [W, np.zeros(fan_out, dtype=np.float32)]
    return params


def forward(params, x):
    W1, b1, W2, b2 = params
    h_pre = x @ W1 + b1
    h = np.maximum(h_pre, 0)
    return h @ W2 + b2, (x, h_pre, h)


def backward(params, cache, dlogits):
    W1, b1, W2, b2 = params
    x, h_pre, h = cache
    dW2 = h.T @ dlogits
    db2 = dlogits.sum(axis=0)
    dh = dlogits @ W2.T
    dh[h_pre <= 0] = 0  # ReLU
    dW1 = x.T @ dh
    db1 = dh.sum(axis=0)
    return [dW1, db1, dW2, db2]


class Adam:
    def __init__(self, params, lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4):
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, betas[0], betas[1], eps, weight_decay
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, params, grads):
        self.t += 1
        c1 = 1 - self.b1 ** self.t
        c2 = 1 - self.b2 ** self.t
        for p, g, m, v in zip(params, grads, self.m, self.v):
            if p.ndim > 1:
                g = g + self.wd * p  # L2 on weights, not biases
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            p -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)


def accuracy(params, x, y):
    logits, _ = forward(params, x)
    return float((logits.argmax(axis=1) == y).mean())


def numpy_cross_entropy(logits, labels):
    """The plain NumPy formula the fused call replaces: mean loss and its gradient."""
    N = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    rows = np.arange(N)
    zy = z[rows, labels]
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(s[:, 0]) - zy))
    grad = e / s
    grad[rows, labels] -= 1.0
    grad /= N
    return loss, grad


def speed_table(rng, sizes, repeats=7):
    print("\nfused fwd+bwd cross_entropy, float32, mean "
          f"(lossx {lossx.get_num_threads()} thread(s); NumPy one thread), median of {repeats}:")
    print(f"{'N x C':>12} {'lossx ms':>10} {'numpy ms':>10} {'speed-up':>9}")
    for N, C in sizes:
        logits = rng.standard_normal((N, C), dtype=np.float32) * 2
        labels = rng.integers(0, C, N)
        l1, g1 = lossx.cross_entropy(logits, labels, return_grad=True)
        l2, g2 = numpy_cross_entropy(logits, labels)
        assert np.isclose(l1, l2, rtol=1e-4) and np.allclose(g1, g2, rtol=1e-3, atol=1e-6 / N)
        inner = 200 if N * C < 100_000 else 1
        times = {"lossx": [], "numpy": []}
        for _ in range(repeats):  # interleaved, so noise hits both alike
            for name, fn in (("lossx", lambda: lossx.cross_entropy(logits, labels, return_grad=True)),
                             ("numpy", lambda: numpy_cross_entropy(logits, labels))):
                t0 = time.perf_counter()
                for _ in range(inner):
                    fn()
                times[name].append((time.perf_counter() - t0) / inner)
        ms = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
        print(f"{f'{N}x{C}':>12} {ms['lossx']:>10.3f} {ms['numpy']:>10.3f} {ms['numpy'] / ms['lossx']:>8.1f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-speed", action="store_true", help="skip the speed table")
    args = ap.parse_args()

    t_start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)  # pixel values are 0..16
    y = digits.target.astype(np.int64)
    perm = rng.permutation(len(x))
    n_test = len(x) // 5
    test, train = perm[:n_test], perm[n_test:]
    x_tr, y_tr, x_te, y_te = x[train], y[train], x[test], y[test]
    print(f"digits: {len(x_tr)} train / {len(x_te)} test, 64 features, 10 classes; lossx {lossx.__version__}")

    params = init_params(rng, [64, 128, 10])
    opt = Adam(params)
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x_tr))
        total, seen = 0.0, 0
        for b in range(0, len(order), args.batch):
            idx = order[b:b + args.batch]
            logits, cache = forward(params, x_tr[idx])
            loss, dlogits = lossx.cross_entropy(logits, y_tr[idx], return_grad=True)
            opt.step(params, backward(params, cache, dlogits))
            total += float(loss) * len(idx)
            seen += len(idx)
        if epoch == 1 or epoch % 5 == 0 or epoch == args.epochs:
            print(f"epoch {epoch:3d}  loss {total / seen:.4f}  train acc {accuracy(params, x_tr, y_tr):.4f}"
                  f"  test acc {accuracy(params, x_te, y_te):.4f}")
    test_acc = accuracy(params, x_te, y_te)
    print(f"final test accuracy {test_acc:.4f} in {time.perf_counter() - t_start:.1f} s")

    if not args.no_speed:
        speed_table(rng, [(32, 10), (4096, 1000), (1024, 32000)])
    return 0 if test_acc > 0.95 else 1


if __name__ == "__main__":
    raise SystemExit(main())
