#!/usr/bin/python3
"""Runs torchlet's conv_gemm benchmark and the same work in PyTorch on this machine; prints both and the ratio.

usage: /usr/bin/python3 bench/compare_torch.py build/bench/conv_gemm [--threads N] [--batch 1,8]
                                               [--min-time S] [--rounds R] [--json PATH]

The shapes come from the binary's own JSON (one list, in conv_gemm.cpp). Both sides use the same thread count
(default: the cores this process may run on), the same timing (one warm-up, then the best of the runs filling
--min-time seconds, at least 3: the machines are shared, the minimum is the least disturbed run) and float32 NCHW tensors. With --rounds R > 1 both sides run R times,
alternating, and each keeps its best time.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F


def time_ms(f, min_time):
    f()
    runs = []
    start = time.perf_counter()
    while len(runs) < 3 or (time.perf_counter() - start < min_time and len(runs) < 1000):
        t0 = time.perf_counter()
        f()
        runs.append((time.perf_counter() - t0) * 1e3)
    return min(runs)


def run_ours(binary, threads, batches, min_time):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "ours.json")
        cmd = [binary, "--threads", str(threads), "--batch", batches, "--min-time", str(min_time), "--json", path]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(path) as f:
            return json.load(f)


def run_torch(ours, min_time):
    g = torch.Generator().manual_seed(0)
    gemm, conv = [], []
    with torch.no_grad():
        for e in ours["gemm"]:
            a = torch.randn(e["M"], e["K"], generator=g)
            b = torch.randn(e["K"], e["N"], generator=g)
            c = torch.empty(e["M"], e["N"])
            gemm.append(time_ms(lambda: torch.mm(a, b, out=c), min_time))
        for e in ours["conv"]:
            x = torch.randn(e["batch"], e["cin"], e["h"], e["h"], generator=g)
            w = torch.randn(e["cout"], e["cin"], e["k"], e["k"], generator=g)
            b = torch.randn(e["cout"], generator=g)
            conv.append(time_ms(lambda: F.conv2d(x, w, b, e["stride"], e["pad"]), min_time))
    return gemm, conv


def run_torch_backward(ours, min_time):
    """conv2d backward (grad_input + grad_weight, no bias) through torch.autograd.grad on a recorded conv."""
    g = torch.Generator().manual_seed(0)
    bwd = []
    for e in ours.get("backward", []):
        x = torch.randn(e["batch"], e["cin"], e["h"], e["h"], generator=g).requires_grad_()
        w = torch.randn(e["cout"], e["cin"], e["k"], e["k"], generator=g).requires_grad_()
        y = F.conv2d(x, w, None, e["stride"], e["pad"])
        go = torch.randn(y.shape, generator=g)
        bwd.append(time_ms(lambda: torch.autograd.grad(y, (x, w), go, retain_graph=True), min_time))
    return bwd


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("binary", help="path to the conv_gemm executable")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--batch", default="1,8", help="comma-separated batch sizes for conv2d")
    p.add_argument("--min-time", type=float, default=0.3, help="seconds of timed runs per entry")
    p.add_argument("--rounds", type=int, default=1, help="alternate both sides this many times, keep the best")
    p.add_argument("--json", help="write both sides' times here")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    print(torch.__config__.parallel_info())
    print("torch", torch.__version__, "| mkldnn enabled:", torch.backends.mkldnn.is_available() and
          torch.backends.mkldnn.enabled, "| threads:", torch.get_num_threads())
    print()

    ours = None
    theirs_gemm, theirs_conv, theirs_bwd = None, None, None
    for r in range(args.rounds):
        o = run_ours(args.binary, args.threads, args.batch, args.min_time)
        tg, tc = run_torch(o, args.min_time)
        tb = run_torch_backward(o, args.min_time)
        if ours is None:
            ours, theirs_gemm, theirs_conv, theirs_bwd = o, tg, tc, tb
            continue
        for i, e in enumerate(o.get("backward", [])):
            ours["backward"][i]["ms"] = min(ours["backward"][i]["ms"], e["ms"])
            theirs_bwd[i] = min(theirs_bwd[i], tb[i])
        for i, e in enumerate(o["gemm"]):
            ours["gemm"][i]["ms"] = min(ours["gemm"][i]["ms"], e["ms"])
            theirs_gemm[i] = min(theirs_gemm[i], tg[i])
        for i, e in enumerate(o["conv"]):
            ours["conv"][i]["ms"] = min(ours["conv"][i]["ms"], e["ms"])
            theirs_conv[i] = min(theirs_conv[i], tc[i])

    print("GEMM, float32, %d threads (torch.mm; BLAS as PyTorch links it)" % args.threads)
    print("%-28s %6s %6s %6s %10s %10s %7s" % ("shape", "M", "N", "K", "ours ms", "torch ms", "ratio"))
    ratios = []
    for e, t in zip(ours["gemm"], theirs_gemm):
        ratios.append(e["ms"] / t)
        print("%-28s %6d %6d %6d %10.3f %10.3f %7.2f" % (e["name"], e["M"], e["N"], e["K"], e["ms"], t, ratios[-1]))
    print("%-28s %45.2f" % ("geometric mean", geomean(ratios)))
    print()

    print("conv2d, float32 NCHW with bias, %d threads (ratio = ours / PyTorch; < 1 is faster)" % args.threads)
    print("%-28s %5s %5s %10s %10s %7s %9s" % ("layer", "batch", "count", "ours ms", "torch ms", "ratio",
                                               "GFLOP/s"))
    by_batch = {}
    for e, t in zip(ours["conv"], theirs_conv):
        r = e["ms"] / t
        acc = by_batch.setdefault(e["batch"], {"ratios": [], "ours": 0.0, "torch": 0.0})
        acc["ratios"].append(r)
        acc["ours"] += e["ms"] * e["count"]
        acc["torch"] += t * e["count"]
        print("%-28s %5d %5d %10.3f %10.3f %7.2f %9.1f" % (e["name"], e["batch"], e["count"], e["ms"], t, r,
                                                          e["gflops"]))
    for batch, acc in by_batch.items():
        print("batch %d: geometric mean of ratios %.2f (worst %.2f); all 53 convs of ResNet-50: ours %.1f ms, "
              "torch %.1f ms, ratio %.2f" % (batch, geomean(acc["ratios"]), max(acc["ratios"]), acc["ours"],
                                            acc["torch"], acc["ours"] / acc["torch"]))
    if ours.get("backward"):
        print()
        print("conv2d backward, float32 NCHW, grad_input + grad_weight, %d threads (torch.autograd.grad)" %
              args.threads)
        print("%-28s %5s %10s %10s %7s %9s" % ("layer", "batch", "ours ms", "torch ms", "ratio", "GFLOP/s"))
        ratios = []
        for e, t in zip(ours["backward"], theirs_bwd):
            ratios.append(e["ms"] / t)
            print("%-28s %5d %10.3f %10.3f %7.2f %9.1f" % (e["name"], e["batch"], e["ms"], t, ratios[-1],
                                                          e["gflops"]))
        print("%-28s %35.2f" % ("geometric mean", geomean(ratios)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "ours": ours, "torch_gemm_ms": theirs_gemm,
                       "torch_conv_ms": theirs_conv, "torch_backward_ms": theirs_bwd}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
