#!/usr/bin/python3
"""ResNet-18/50 on the CPU, torchlet next to PyTorch in the same run: inference at batch 1 and 8, a training step
and a frozen-backbone step at batch 16 (224x224, float32, NCHW); inference again in channels-last layout on both
sides (torchlet also with BatchNorm folded, compared with PyTorch's channels-last eager inference).

usage: /usr/bin/python3 bench/compare_resnet.py build/bench/resnet [--threads N] [--min-time S] [--arch resnet18,resnet50]

Both sides: the same thread count (default: the cores this process may use), one warm-up, the best of the runs
filling --min-time seconds (at least 3). Targets (shared/docs/performance.md): inference <= 1.0x PyTorch,
training step <= 1.25x, frozen step <= 1.1x our own forward at the same batch.
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import torch
import torchvision


def best_ms(f, min_time):
    f()
    best, runs, start = float("inf"), 0, time.perf_counter()
    while runs < 3 or (time.perf_counter() - start < min_time and runs < 100):
        t0 = time.perf_counter()
        f()
        best = min(best, (time.perf_counter() - t0) * 1e3)
        runs += 1
    return best


def torch_side(arch, min_time):
    torch.manual_seed(0)
    m = getattr(torchvision.models, arch)()
    res = {}
    m.eval()
    for b in (1, 8):
        x = torch.randn(b, 3, 224, 224)
        with torch.no_grad():
            res[("inference", b)] = best_ms(lambda: m(x), min_time)
    m.to(memory_format=torch.channels_last)
    for b in (1, 8):
        x = torch.randn(b, 3, 224, 224).to(memory_format=torch.channels_last)
        with torch.no_grad():
            res[("inference_cl", b)] = best_ms(lambda: m(x), min_time)
    m.to(memory_format=torch.contiguous_format)
    b = 16
    x, y = torch.randn(b, 3, 224, 224), torch.randint(0, 1000, (b,))
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    res[("train_step", b)] = best_ms(step, min_time)
    m.fc = torch.nn.Linear(m.fc.in_features, 10)
    for n, p in m.named_parameters():
        p.requires_grad = n.startswith("fc.")
    m.train()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.eval()
    y10 = torch.randint(0, 10, (b,))
    head = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.01, momentum=0.9)

    def frozen():
        head.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y10).backward()
        head.step()
    res[("frozen_step", b)] = best_ms(frozen, min_time)
    m.eval()
    with torch.no_grad():
        res[("inference", b)] = best_ms(lambda: m(x), min_time)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--min-time", type=float, default=3.0)
    ap.add_argument("--arch", default="resnet18,resnet50")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(torch.__config__.parallel_info())
    with tempfile.TemporaryDirectory() as d:
        j = os.path.join(d, "ours.json")
        subprocess.run([a.binary, "--arch", a.arch, "--threads", str(a.threads), "--min-time", str(a.min_time),
                        "--json", j], check=True)
        ours = {(r["arch"], r["work"], r["batch"]): r["ms"] for r in json.load(open(j))}
    print("| model | work | batch | torchlet (ms) | PyTorch (ms) | ratio | target |")
    print("|---|---|---|---|---|---|---|")
    for arch in a.arch.split(","):
        theirs = torch_side(arch, a.min_time)
        # our channels-last + folded BatchNorm inference is compared with PyTorch's channels-last eager inference
        rows = list(theirs.items()) + [(("inference_cl_folded", b), theirs[("inference_cl", b)]) for b in (1, 8)]
        for (work, b), t in rows:
            o = ours[(arch, work, b)]
            target = {"train_step": "<= 1.25x", "frozen_step": "<= 1.1x our fwd"}.get(work, "<= 1.0x")
            extra = ""
            if work == "frozen_step":
                extra = " (%.2fx our forward)" % (o / ours[(arch, "inference", b)])
            print("| %s | %s | %d | %.1f | %.1f | %.2fx%s | %s |" % (arch, work, b, o, t, o / t, extra, target))


if __name__ == "__main__":
    main()
