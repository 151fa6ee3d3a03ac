#!/usr/bin/python3
"""Writes checkpoint files with real PyTorch for tests/interop/read_torch_files.cpp (PyTorch -> torchlet).

usage: /usr/bin/python3 write_torch_files.py OUTDIR

For each file OUTDIR/<name>.pth it writes OUTDIR/<name>.manifest: the object tree in walk order as
tests/fixtures/gen/checkpoints.py::manifest() describes it, each tensor line ending in the SHA-256 of the tensor's
contiguous bytes. OUTDIR/files.txt lists the names. Random contents (fixed seeds); resnet18 (random init) when
torchvision imports.
"""
import collections
import hashlib
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fixtures"))
from gen.checkpoints import manifest  # noqa: E402


def tensor_sha256(t, _index):
    t = t.detach().contiguous().reshape(-1)
    return hashlib.sha256(t.view(torch.uint8).numpy().tobytes()).hexdigest()


def random_checkpoint():
    g = torch.Generator().manual_seed(1234)
    big = torch.randn(384, 512, generator=g)
    d = collections.OrderedDict()
    d["big"] = big
    d["big_t"] = big.t()
    d["big_rows"] = big[100:200]
    d["big_cols"] = big[:, 7::5]
    d["f64"] = torch.randn(1000, 3, generator=g, dtype=torch.float64)
    d["f16"] = torch.randn(257, 129, generator=g).half()
    d["bf16"] = torch.randn(300, 77, generator=g).bfloat16()
    d["i64"] = torch.randint(-2 ** 62, 2 ** 62, (5000,), generator=g, dtype=torch.int64)
    d["i32"] = torch.randint(-2 ** 31, 2 ** 31 - 1, (4099,), generator=g, dtype=torch.int32)
    d["i16"] = torch.randint(-2 ** 15, 2 ** 15 - 1, (333,), generator=g, dtype=torch.int16)
    d["i8"] = torch.randint(-128, 127, (1001,), generator=g, dtype=torch.int8)
    d["u8"] = torch.randint(0, 255, (64, 64, 3), generator=g, dtype=torch.uint8)
    d["bool"] = torch.rand(777, generator=g) > 0.5
    d["nested"] = {"epoch": 12, "lr": [0.1, 0.01], "name": "run-\u00e9", "scalar": torch.tensor(2.5)}
    return d


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    files = []

    def write(name, obj, **kw):
        torch.save(obj, os.path.join(out, name + ".pth"), **kw)
        with open(os.path.join(out, name + ".manifest"), "w") as f:
            f.write(manifest(obj, tensor_sha256))
        files.append(name)

    ck = random_checkpoint()
    write("random", ck)
    write("random_p4", ck, pickle_protocol=4)
    write("random_legacy", ck, _use_new_zipfile_serialization=False)
    try:
        import torchvision
    except Exception as e:  # noqa: BLE001
        print("torchvision not importable (%s): skipping resnet18" % e)
    else:
        torch.manual_seed(0)
        sd = torchvision.models.resnet18().state_dict()
        write("resnet18", sd)
        write("resnet18_legacy", sd, _use_new_zipfile_serialization=False)
    with open(os.path.join(out, "files.txt"), "w") as f:
        f.write("\n".join(files) + "\n")
    print("wrote %d files to %s" % (len(files), out))


if __name__ == "__main__":
    main()
