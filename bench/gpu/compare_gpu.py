#!/usr/bin/env python3
"""ResNet-50 on the GPU, torchlet next to PyTorch eager in the same run (bench/gpu/run.sh calls it).

1. Correctness: PyTorch saves a seeded ResNet-50 (BatchNorm statistics made non-trivial by train-mode forwards);
   torchlet's `resnet_gpu --check` loads it on cuda:0 and writes eval logits for a fixed input, in fp32, TF32 and
   bf16 autocast, NCHW and channels-last. They are compared with PyTorch's CPU float32 logits and with PyTorch's
   GPU logits in the same precision (relative to the largest logit): fp32 within 1e-4, TF32 within 1e-2, bf16
   within 1e-1.
2. Speed: for each workload both sides run warm-up iterations, then a timed run measured with CUDA events
   (PyTorch: torch.backends.cudnn.benchmark = True, channels_last where the row says so, the same TF32 flags,
   bf16 through torch.autocast). The table gives images/s (batch-1 rows: latency) and torchlet / PyTorch.
   Targets (shared/docs/performance.md, issue 9): training and inference throughput >= 1.0x PyTorch,
   batch-1 latency <= 0.5x PyTorch's. Rows labelled "graph" time torchlet's CUDA-graph replay of one step
   (resnet_gpu --cuda-graph) next to PyTorch eager.

usage: python3 bench/gpu/compare_gpu.py BUILD/bench/gpu/resnet_gpu [--quick] [--json OUT.json]
Uses torchvision's resnet50 when torchvision imports, else an identical definition below (same state_dict keys).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---- ResNet-50 with torchvision's parameter names, for machines without torchvision ----------------------------
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet50(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]):
            layers = []
            for b in range(blocks):
                s = stride if b == 0 else 1
                down = None
                if b == 0 and (s != 1 or cin != width * 4):
                    down = nn.Sequential(nn.Conv2d(cin, width * 4, 1, s, bias=False), nn.BatchNorm2d(width * 4))
                layers.append(Bottleneck(cin, width, s, down))
                cin = width * 4
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50():
    try:
        import torchvision
        return torchvision.models.resnet50()
    except Exception:
        return ResNet50()


# ---- helpers -------------------------------------------------------------------------------------------------------
def set_precision(p):
    torch.backends.cuda.matmul.allow_tf32 = p == "tf32"
    torch.backends.cudnn.allow_tf32 = p == "tf32"


def autocast(p):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=p == "bf16")


def time_ms(step, warmup, iters):
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        step()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop) / iters


def torch_side(work, batch, precision, channels_last, warmup, iters):
    torch.manual_seed(0)
    set_precision(precision)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = resnet50().cuda().to(memory_format=fmt)
    x = torch.randn(batch, 3, 224, 224, device="cuda").to(memory_format=fmt)
    if work == "infer":
        model.eval()

        def step():
            with torch.no_grad(), autocast(precision):
                model(x)
    else:
        if work == "frozen":
            model.fc = nn.Linear(2048, 10).cuda()
            for n, p in model.named_parameters():
                p.requires_grad = n.startswith("fc.")
            model.train()
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        else:
            model.train()
        y = torch.randint(0, 10 if work == "frozen" else 1000, (batch,), device="cuda")
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)

        def step():
            opt.zero_grad()
            with autocast(precision):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
    ms = time_ms(step, warmup, iters)
    del model, x
    torch.cuda.empty_cache()
    return ms


def torchlet_side(exe, work, batch, precision, channels_last, warmup, iters, graph=False):
    cmd = [exe, "--work", work, "--batch", str(batch), "--precision", precision, "--warmup", str(warmup),
           "--iters", str(iters)] + (["--channels-last"] if channels_last else [])
    cmd += ["--cuda-graph"] if graph else []
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        return None, (run.stderr or run.stdout).strip().splitlines()[-1:] or ["exit %d" % run.returncode]
    return json.loads(run.stdout.strip().splitlines()[-1])["ms"], None


def relative_error(got, want):
    got, want = got.double().cpu(), want.double().cpu()
    if got.shape != want.shape:
        return float("inf")
    return float((got - want).abs().max() / max(float(want.abs().max()), 1e-30))


def correctness(exe, tmp):
    """Returns (lines, failures)."""
    torch.manual_seed(1)
    model = resnet50()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        model.train()
        for _ in range(2):
            model(torch.randn(8, 3, 224, 224))
    model.eval()
    weights, inp = os.path.join(tmp, "weights.pth"), os.path.join(tmp, "input.pth")
    torch.save(model.state_dict(), weights)
    x = torch.randn(4, 3, 224, 224)
    torch.save({"input": x}, inp)
    set_precision("fp32")
    with torch.no_grad():
        cpu_logits = model(x)
    model.cuda()
    lines, failures = [], []
    for precision, tol in (("fp32", 1e-4), ("tf32", 1e-2), ("bf16", 1e-1)):
        for cl in (False, True):
            set_precision(precision)
            fmt = torch.channels_last if cl else torch.contiguous_format
            with torch.no_grad(), autocast(precision):
                torch_gpu = model.to(memory_format=fmt)(x.cuda().to(memory_format=fmt)).float().cpu()
            out = os.path.join(tmp, "logits.pth")
            run = subprocess.run([exe, "--check", weights, inp, out, "--precision", precision] +
                                 (["--channels-last"] if cl else []), capture_output=True, text=True)
            what = "%s %s" % (precision, "channels_last" if cl else "NCHW")
            if run.returncode != 0:
                failures.append("%s: resnet_gpu --check failed: %s" % (what, (run.stderr or run.stdout).strip()))
                continue
            got = torch.load(out, weights_only=True)["logits"]
            e_cpu, e_gpu = relative_error(got, cpu_logits), relative_error(got, torch_gpu)
            ok = e_cpu <= tol and e_gpu <= tol
            lines.append("%-22s vs PyTorch CPU fp32 %.1e, vs PyTorch GPU same precision %.1e (tolerance %g) %s" %
                         (what, e_cpu, e_gpu, tol, "ok" if ok else "FAIL"))
            if not ok:
                failures.append(lines[-1])
    set_precision("fp32")
    return lines, failures


WORKLOADS = [  # (work, batch, precision, channels_last)
    ("train", 256, "tf32", True), ("train", 256, "bf16", True), ("train", 256, "tf32", False),
    ("frozen", 256, "tf32", True),
    ("infer", 256, "bf16", True), ("infer", 256, "tf32", True),
    ("infer", 1, "tf32", True), ("infer", 1, "bf16", True), ("infer", 1, "tf32", False),
    # torchlet replaying one captured step as a CUDA graph, next to PyTorch eager
    ("infer", 1, "tf32", True, "graph"), ("infer", 1, "bf16", True, "graph"), ("train", 256, "tf32", True, "graph"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("exe")
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run of the script)")
    ap.add_argument("--json")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("skipped: PyTorch sees no CUDA device")
        return 77
    torch.backends.cudnn.benchmark = True
    print("GPU: %s, PyTorch %s, cuDNN %s" % (torch.cuda.get_device_name(0), torch.__version__,
                                             torch.backends.cudnn.version()), flush=True)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        lines, failures = correctness(a.exe, tmp)
    print("correctness (ResNet-50 eval logits, batch 4):")
    for line in lines:
        print("  " + line)
    for f in failures:
        print("FAIL " + f)
    failed += len(failures)
    rows = []
    print("\n%-7s %5s %-5s %-12s %14s %14s %9s %8s" % ("work", "batch", "prec", "layout", "PyTorch", "torchlet",
                                                       "ratio", "target"), flush=True)
    for work, batch, precision, cl, *label in WORKLOADS:
        graph = label == ["graph"]
        warmup, iters = (3, 5) if a.quick else ((10, 30) if batch > 1 else (20, 200))
        t_ms = torch_side(work, batch, precision, cl, warmup, iters)
        o_ms, err = torchlet_side(a.exe, work, batch, precision, cl, warmup, iters, graph)
        layout = ("NHWC" if cl else "NCHW") + (" graph" if graph else "")
        if batch == 1:  # latency: lower is better, ratio torchlet / PyTorch
            t_txt, o_txt = "%.3f ms" % t_ms, ("%.3f ms" % o_ms if o_ms else "n/a")
            ratio, target = (o_ms / t_ms if o_ms else None), "<= 0.5"
        else:  # throughput: higher is better, ratio torchlet / PyTorch
            t_txt, o_txt = "%.0f img/s" % (batch * 1e3 / t_ms), ("%.0f img/s" % (batch * 1e3 / o_ms) if o_ms else "n/a")
            ratio, target = (t_ms / o_ms if o_ms else None), ">= 1.0"
        print("%-7s %5d %-5s %-12s %14s %14s %9s %8s%s" % (work, batch, precision, layout, t_txt, o_txt,
                                                         "%.2fx" % ratio if ratio else "n/a", target,
                                                         "  (%s)" % err[0] if err else ""), flush=True)
        rows.append({"work": work, "batch": batch, "precision": precision, "channels_last": cl, "cuda_graph": graph,
                     "torch_ms": t_ms, "torchlet_ms": o_ms, "ratio": ratio, "error": err})
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"correctness": lines, "failures": failures, "rows": rows}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
