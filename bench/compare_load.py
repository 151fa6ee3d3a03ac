#!/usr/bin/python3
"""Checkpoint loading: torchlet::load (copy and zero-copy mmap) next to torch.load on the same ResNet-50
state_dict file, in the same run; prints a table of times, ratios and peak extra memory.

usage: /usr/bin/python3 bench/compare_load.py build/bench/load_checkpoint [--file PATH] [--min-time S]

Without --file it writes torchvision's resnet50() state_dict (random init, 102.5 MB) to a temporary file. Both
sides read from the page cache (one warm-up load first) and report their best time; "ready tensors" means every
tensor is usable; a memory-mapped (zero-copy) load reads a page when it is first used, as torch.load(mmap=True).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch


def torch_load_ms(path, min_time, **kw):
    def once():
        sd = torch.load(path, **kw)
        s = 0
        for t in sd.values():
            b = t.contiguous().view(-1).view(torch.uint8) if t.numel() else None
            if b is not None:
                s += int(b[::4096].sum())
        return s
    once()
    runs = []
    start = time.perf_counter()
    while len(runs) < 3 or (time.perf_counter() - start < min_time and len(runs) < 200):
        t0 = time.perf_counter()
        once()
        runs.append((time.perf_counter() - t0) * 1e3)
    return min(runs)


def torch_peak_extra(path):
    code = ("import resource,torch,sys\n"
            "def anon():\n"
            "    return int([l for l in open('/proc/self/status') if l.startswith('RssAnon:')][0].split()[1])*1024\n"
            "b=anon(); sd=torch.load(sys.argv[1], weights_only=True)\n"
            "print(anon()-b)")
    out = subprocess.run([sys.executable, "-c", code, path], check=True, capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1])


def ours(binary, path, mode, min_time):
    with tempfile.TemporaryDirectory() as d:
        j = os.path.join(d, "o.json")
        subprocess.run([binary, path, "--mode", mode, "--min-time", str(min_time), "--json", j], check=True,
                       stdout=subprocess.DEVNULL)
        with open(j) as f:
            return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--file")
    ap.add_argument("--min-time", type=float, default=2.0)
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as d:
        path = a.file
        if path is None:
            import torchvision
            path = os.path.join(d, "resnet50.pth")
            torch.save(torchvision.models.resnet50().state_dict(), path)
        size = os.path.getsize(path)
        major = int(torch.__version__.split(".")[0])
        kw = {"weights_only": True}
        t_torch = torch_load_ms(path, a.min_time, **kw)
        t_copy = ours(a.binary, path, "copy", a.min_time)
        t_mmap = ours(a.binary, path, "mmap", a.min_time)
        peak_torch = torch_peak_extra(path)
        print("torch %s, file %.1f MB, %d threads" % (torch.__version__, size / 1e6, torch.get_num_threads()))
        print("| load | time (ms) | vs torch.load(weights_only=True) | target | peak extra memory / tensor bytes |")
        print("|---|---|---|---|---|")
        tb = t_copy["tensor_bytes"]
        print("| torch.load(weights_only=True) | %.1f | 1.00x | | %.2f |" % (t_torch, peak_torch / tb))
        print("| torchlet::load (copy) | %.1f | %.2fx | <= 0.5x | %.2f |"
              % (t_copy["best_ms"], t_copy["best_ms"] / t_torch, t_copy["peak_extra_bytes"] / tb))
        print("| torchlet::load (mmap, zero-copy) | %.1f | %.2fx | <= 0.1x | %.2f |"
              % (t_mmap["best_ms"], t_mmap["best_ms"] / t_torch, t_mmap["peak_extra_bytes"] / tb))
        print("zero-copy: tensors borrow the mapped file and their pages are read on first use; reading every page "
              "once took %.1f ms in the first load" % t_mmap["first_ms"])
        print("memory: anonymous memory (RssAnon) added by the load, over the tensors' bytes")
        if major < 2:
            print("(torch.load has no mmap=True before 2.1)")


if __name__ == "__main__":
    main()
