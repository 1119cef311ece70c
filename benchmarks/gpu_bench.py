"""GPU benchmark: lossx vs torch eager, torch.compile and Liger-Kernel.

    python benchmarks/gpu_bench.py --out gpu_bench.json [--families softmax,pointwise]

softmax: for bf16 and fp32 logits at several (rows, classes), times the forward
loss (mean) and the fused forward+backward (loss and d loss / d logits), and
reports ms, TB/s (logits bytes read, + gradient bytes written for fwd+bwd).

pointwise: mse_loss and binary_cross_entropy_with_logits on 2^28 fp32 / bf16
elements, mean: forward, and forward+backward with both gradients (d input and
d target, as lossx returns them; torch's autograd is asked for both too).
TB/s counts bytes read + bytes written: input and target read (forward), plus
both gradients written (forward+backward).

lossx runs cross_entropy both with its default kernel (ce_rows, impl "lossx")
and with the row-in-registers kernel (ce_reg, LOSSX_CUDA_CE_KERNEL=reg, impl
"lossx-reg"). Liger-Kernel's LigerCrossEntropyFunction is timed where
liger_kernel (and triton) import: its forward writes the gradient over its
input, so it gets its own copy of the logits.

Every figure comes with its ratio to a device-to-device copy measured in the
same run (torch clone of a 4 GB buffer, bytes read + written). Median of many
reps timed with CUDA events (triton.testing.do_bench when triton is importable).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import lossx

SHAPES = [(32768, 4096), (32768, 32768), (32768, 131072), (8192, 131072), (4096, 262144)]
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}

try:
    from triton.testing import do_bench as _do_bench
except Exception:  # noqa: BLE001 - triton missing or broken
    _do_bench = None
try:
    from liger_kernel.ops.cross_entropy import LigerCrossEntropyFunction
except Exception:  # noqa: BLE001 - liger_kernel or triton missing
    LigerCrossEntropyFunction = None


def with_reg_kernel(fn):
    """fn run with lossx's ce_reg kernel selected (read at every call)."""
    def run():
        os.environ["LOSSX_CUDA_CE_KERNEL"] = "reg"
        try:
            return fn()
        finally:
            del os.environ["LOSSX_CUDA_CE_KERNEL"]
    return run


def liger_ce(x, y):
    # (input, target, weight, ignore_index, lse_square_scale, label_smoothing,
    #  reduction, softcap, return_z_loss, return_token_accuracy, return_predicted_tokens)
    return LigerCrossEntropyFunction.apply(x, y, None, -100, 0.0, 0.0, "mean", None, False, False, False)[0]


def bench(fn, reps=30):
    if _do_bench is not None:
        return float(_do_bench(fn, warmup=25, rep=100, return_mode="median"))
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def copy_tbs():
    buf = torch.empty(2**30, dtype=torch.float32, device="cuda")  # 4 GB
    ms = bench(lambda: buf.clone())
    tbs = 2 * buf.numel() * 4 / (ms * 1e-3) / 1e12
    del buf
    torch.cuda.empty_cache()
    return tbs, ms


POINTWISE_N = 2**28
POINTWISE_LOSSES = {
    "mse_loss": (F.mse_loss, lambda g, n, dt: torch.randn(n, device="cuda", generator=g).to(dt)),
    "binary_cross_entropy_with_logits": (F.binary_cross_entropy_with_logits,
                                         lambda g, n, dt: torch.rand(n, device="cuda", generator=g).to(dt)),
}


def pointwise_rows(copy, compiled_ok):
    """mse_loss and binary_cross_entropy_with_logits at 2^28 elements (see the module docstring)."""
    rows = []
    n = POINTWISE_N
    gen = torch.Generator(device="cuda").manual_seed(0)
    for dname, dt in DTYPES.items():
        es = torch.finfo(dt).bits // 8
        free, _ = torch.cuda.mem_get_info()
        if n * es * 4 + n * 4 * 4 > free * 0.9:  # x, y, 2 grads, torch's float temporaries
            print(f"skip pointwise {dname}: not enough free memory")
            continue
        x = (torch.randn(n, device="cuda", generator=gen) * 2).to(dt)
        for name, (tfn, make_target) in POINTWISE_LOSSES.items():
            y = make_target(gen, n, dt)
            lfn = getattr(lossx, name)
            xg = x.detach().requires_grad_(True)
            yg = y.detach().requires_grad_(True)

            def t_fwdbwd(tfn=tfn, xg=xg, yg=yg):
                xg.grad = yg.grad = None
                tfn(xg, yg).backward()

            impls = {
                ("lossx", "fwd"): lambda lfn=lfn, y=y: lfn(x, y),
                ("lossx", "fwd+bwd"): lambda lfn=lfn, y=y: lfn(x, y, return_grad=True),
                ("torch", "fwd"): lambda tfn=tfn, y=y: tfn(x, y),
                ("torch", "fwd+bwd"): t_fwdbwd,
            }
            if compiled_ok:  # torch.compile worked for the softmax set-up (and was not turned off)
                try:
                    cf = torch.compile(tfn)

                    def cfb(a, b, tfn=tfn):
                        a = a.detach().requires_grad_(True)
                        b = b.detach().requires_grad_(True)
                        loss = tfn(a, b)
                        loss.backward()
                        return loss, a.grad, b.grad

                    cfbc = torch.compile(cfb)
                    impls[("torch.compile", "fwd")] = lambda cf=cf, y=y: cf(x, y)
                    impls[("torch.compile", "fwd+bwd")] = lambda cfbc=cfbc, y=y: cfbc(x, y)
                except Exception as e:  # noqa: BLE001
                    print(f"torch.compile unavailable: {e}")
            # Same value from lossx and torch (fp32 math on the same inputs) before timing anything.
            ref = float(tfn(x.float(), y.float()))
            got = float(lfn(x, y))
            assert abs(got - ref) <= 1e-4 * abs(ref), (name, dname, got, ref)
            _, (gx, gy) = lfn(x, y, return_grad=True)
            t_fwdbwd()
            for what, a, b in (("d_input", gx, xg.grad), ("d_target", gy, yg.grad)):
                err = float((a.float() - b.float()).abs().max())
                assert err <= 2 ** -6 * float(b.float().abs().max()) + 1e-12, (name, dname, what, err)
            del gx, gy
            for (impl, kind), fn in impls.items():
                try:
                    ms = bench(fn)
                except Exception as e:  # noqa: BLE001 - torch.compile may fail on some setups
                    print(f"{impl} {kind} pointwise {name} {dname} failed: {type(e).__name__}: {e}")
                    continue
                moved = n * es * (4 if kind == "fwd+bwd" else 2)  # x, y read (+ two grads written)
                tbs = moved / (ms * 1e-3) / 1e12
                rows.append(dict(family="pointwise", loss=name, dtype=dname, n=n, impl=impl, kind=kind, ms=ms,
                                 tbs=tbs, copy_ratio=tbs / copy))
            del y, xg, yg
            torch.cuda.empty_cache()
        del x
        torch.cuda.empty_cache()
    return rows


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu_bench.json")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ap.add_argument("--budget-s", type=float, default=200.0, help="stop adding softmax cases after this long")
    ap.add_argument("--families", default="softmax,pointwise", help="comma-separated: softmax, pointwise")
    args = ap.parse_args(argv)
    families = set(args.families.split(","))
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to benchmark", file=sys.stderr)
        return 0
    t_start = time.time()
    dev = torch.cuda.get_device_name()
    copy, copy_ms = copy_tbs()
    print(f"# {dev}; device-to-device copy {copy:.2f} TB/s (4 GB clone, {copy_ms:.2f} ms)\n")
    compiled = {}
    if not args.no_compile:
        try:
            compiled["fwd"] = torch.compile(lambda x, y: F.cross_entropy(x, y))

            def fb(x, y):
                x = x.detach().requires_grad_(True)
                loss = F.cross_entropy(x, y)
                loss.backward()
                return loss, x.grad

            compiled["fwdbwd"] = torch.compile(fb)
        except Exception as e:  # noqa: BLE001
            print(f"torch.compile unavailable: {e}")
    rows = []
    for dname, dt in DTYPES.items() if "softmax" in families else ():
        for N, C in SHAPES:
            if time.time() - t_start > args.budget_s:
                print(f"time budget reached: skipping {dname} {N}x{C}")
                continue
            es = torch.finfo(dt).bits // 8
            need = N * C * es * 3 + (N * C * 4 if dt != torch.float32 else 0)  # x, grad, torch's temporaries
            free, _ = torch.cuda.mem_get_info()
            if need > free * 0.9:
                print(f"skip {dname} {N}x{C}: needs ~{need / 2**30:.1f} GiB")
                continue
            x = torch.randn(N, C, device="cuda", dtype=dt)
            y = torch.randint(0, C, (N,), device="cuda")
            xg = x.detach().requires_grad_(True)
            nbytes = N * C * es

            def t_fwdbwd():
                xg.grad = None
                F.cross_entropy(xg, y).backward()

            impls = {
                ("lossx", "fwd"): lambda: lossx.cross_entropy(x, y),
                ("lossx", "fwd+bwd"): lambda: lossx.cross_entropy(x, y, return_grad=True),
                ("torch", "fwd"): lambda: F.cross_entropy(x, y),
                ("torch", "fwd+bwd"): t_fwdbwd,
            }
            impls[("lossx-reg", "fwd")] = with_reg_kernel(impls[("lossx", "fwd")])
            impls[("lossx-reg", "fwd+bwd")] = with_reg_kernel(impls[("lossx", "fwd+bwd")])
            xl = None
            if LigerCrossEntropyFunction is not None and need + nbytes <= free * 0.9:
                xl = x.clone().requires_grad_(True)  # Liger overwrites it with the gradient

                def t_liger_fwdbwd():
                    xl.grad = None
                    liger_ce(xl, y).backward()

                impls[("liger", "fwd")] = lambda: liger_ce(x, y)
                impls[("liger", "fwd+bwd")] = t_liger_fwdbwd
            if "fwd" in compiled:
                impls[("torch.compile", "fwd")] = lambda: compiled["fwd"](x, y)
                impls[("torch.compile", "fwd+bwd")] = lambda: compiled["fwdbwd"](x, y)
            # Same loss from every implementation before timing anything.
            ref = float(F.cross_entropy(x.float() if dt != torch.float32 else x, y))
            got = float(lossx.cross_entropy(x, y))
            assert abs(got - ref) <= 1e-4 * abs(ref), (got, ref)
            got = float(with_reg_kernel(lambda: lossx.cross_entropy(x, y))())
            assert abs(got - ref) <= 1e-4 * abs(ref), ("ce_reg", got, ref)
            if xl is not None:
                got = float(liger_ce(x, y))
                assert abs(got - ref) <= 1e-3 * abs(ref), ("liger", got, ref)
            for (impl, kind), fn in impls.items():
                try:
                    ms = bench(fn)
                except Exception as e:  # noqa: BLE001 - torch.compile may fail on some setups
                    print(f"{impl} {kind} {dname} {N}x{C} failed: {type(e).__name__}: {e}")
                    continue
                moved = nbytes * (2 if kind == "fwd+bwd" else 1)
                tbs = moved / (ms * 1e-3) / 1e12
                rows.append(dict(family="softmax", dtype=dname, rows=N, classes=C, impl=impl, kind=kind, ms=ms,
                                 tbs=tbs, copy_ratio=tbs / copy))
            del x, y, xg, xl
            torch.cuda.empty_cache()
    if "pointwise" in families:
        rows += pointwise_rows(copy, compiled_ok=bool(compiled))
    print("| dtype | case | kind | impl | ms | TB/s | / copy |")
    print("|---|---|---|---|---:|---:|---:|")
    for r in rows:
        case = f"{r['rows']}x{r['classes']}" if r["family"] == "softmax" else f"{r['loss']} n=2^28"
        print(f"| {r['dtype']} | {case} | {r['kind']} | {r['impl']} | {r['ms']:.3f} | "
              f"{r['tbs']:.2f} | {r['copy_ratio']:.2f} |")
    with open(args.out, "w") as f:
        json.dump(dict(device=dev, copy_tbs=copy, timer="do_bench" if _do_bench else "cuda events",
                       lossx=lossx.info(), results=rows), f, indent=1)
    print(f"\nwrote {args.out} in {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
