"""A few lossx GPU calls, small and chosen to reach the kernels' risky paths,
to run under NVIDIA's compute-sanitizer (racecheck, initcheck, memcheck):

    compute-sanitizer --tool racecheck --error-exitcode 1 python3 tools/gpu_sanitize.py

The tests compare results; a race or a read of uninitialised memory can still
give the right numbers on one run, which only the sanitizer sees. Needs lossx
built with CUDA and a CUDA PyTorch. tools/gpu_check.sh runs it when SANITIZE=1.
"""
import os

import numpy as np
import torch

import lossx


def main():
    rng = np.random.default_rng(0)
    dev = os.environ.get("LOSSX_SANITIZE_DEVICE", "cuda")  # "cpu" checks the script itself
    for kernel in ("rows", "reg"):
        os.environ["LOSSX_CUDA_CE_KERNEL"] = kernel
        for C, dt in ((1000, torch.float32), (4096, torch.bfloat16), (50000, torch.float16), (131072, torch.float32)):
            if dev == "cpu" and dt == torch.bfloat16:
                dt = torch.float32  # (NumPy has no bfloat16 for a CPU tensor)
            x = torch.randn(6, C, device=dev).to(dt)
            y = torch.tensor(rng.integers(0, C, 6), device=dev)
            y[2] = -100
            lossx.cross_entropy(x, y, return_grad=True, return_lse=True)
            lossx.cross_entropy(x, y, return_grad=True, label_smoothing=0.1, softcap=20.0, z_loss=1e-4)
            lossx.cross_entropy(x.clone(), y, return_grad=True, inplace_grad=True, return_lse=True)
            lossx.nll_loss(torch.log_softmax(x.float(), 1).to(dt), y, return_grad=True)
            p = torch.softmax(torch.randn(6, C, device=dev), 1).to(dt)
            lossx.cross_entropy(x, p, return_grad=True)
    os.environ.pop("LOSSX_CUDA_CE_KERNEL")
    # Soft targets with the logits at a 4-byte offset, gradient in place.
    base = torch.randn(4 * 4096 + 1, device=dev)
    p = torch.softmax(torch.randn(4, 4096, device=dev), 1)
    lossx.cross_entropy(base[1:].view(4, 4096), p, return_grad=True, inplace_grad=True)
    # nll in place and a bad label (nothing may be written after it).
    lp = torch.log_softmax(torch.randn(9, 33, device=dev), 1)
    lossx.cross_entropy(lp, torch.tensor(rng.integers(0, 33, 9), device=dev), return_grad=True,
                        inplace_grad=True, _log_probs=True)
    bad = torch.tensor(rng.integers(0, 33, 9), device=dev)
    bad[4] = 33
    try:
        lossx.cross_entropy(lp, bad, return_grad=True)
    except IndexError:
        pass
    x = torch.randn(37, 129, device=dev)
    lossx.log_softmax(x, return_grad=True)
    lossx.logsumexp(x, return_grad=True)
    t = torch.randn(37, 129, device=dev)
    for f in (lossx.mse_loss, lossx.huber_loss, lossx.binary_cross_entropy_with_logits):
        f(x, t if f is not lossx.binary_cross_entropy_with_logits else torch.rand_like(t), return_grad=True)
    lossx.triplet_margin_loss(x, t, torch.randn_like(x), return_grad=True)
    lossx.cosine_embedding_loss(x, t, torch.where(torch.rand(37, device=dev) < 0.5, -1.0, 1.0), return_grad=True)
    yk = torch.rand(37, 129, device=dev)
    lossx.keras.categorical_crossentropy(yk / yk.sum(1, keepdim=True), torch.softmax(x, 1), return_grad=True)
    lossx.keras.categorical_hinge((yk > 0.5).float(), x, return_grad=True)
    lossx.keras.dice((yk > 0.5).float(), torch.sigmoid(x), return_grad=True)
    lossx.multi_margin_loss(x, torch.tensor(rng.integers(0, 129, 37), device=dev), return_grad=True)
    T, N, Cc, S = 50, 4, 20, 12
    lpc = torch.log_softmax(torch.randn(T, N, Cc, device=dev), 2)
    tg = torch.tensor(rng.integers(1, Cc, (N, S)), device=dev)
    lossx.ctc_loss(lpc, tg, np.full(N, T), np.array([12, 5, 0, 9]), return_grad=True)
    if dev == "cuda":
        torch.cuda.synchronize()
    print("gpu_sanitize: all calls ran")


if __name__ == "__main__":
    main()
