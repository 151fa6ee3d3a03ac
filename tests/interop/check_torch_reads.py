#!/usr/bin/python3
"""Opens the checkpoints tests/interop/write_checkpoints.cpp wrote (directory argv[1]) with real PyTorch.

Every file is loaded with torch.load(weights_only=True) where the installed PyTorch allows it (1.13's weights-only
loader refuses any float in the pickle, so files with floats use plain torch.load there), every tensor is compared
bit for bit with the values recomputed here from the same formulas, every non-tensor leaf is checked, and the
state_dicts / optimizer states are loaded into real torch.nn modules and torch.optim optimizers.
Exits 0 when all checks pass, 1 otherwise.
"""
import collections
import inspect
import os
import sys
import zipfile

import torch

VERSION = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2] if x.isdigit())
WEIGHTS_ONLY = "weights_only" in inspect.signature(torch.load).parameters
FLOATS_OK = VERSION >= (2, 0)  # 1.13's weights-only unpickler has no BINFLOAT
MMAP_OK = "mmap" in inspect.signature(torch.load).parameters
INT_OF = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
          torch.float64: torch.int64}

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def fill(dtype, shape, seed):
    """The C++ side's fill(): see tests/interop/write_checkpoints.cpp."""
    n = 1
    for s in shape:
        n *= s
    i = torch.arange(n, dtype=torch.int64)
    k = i * 7 + seed
    if dtype == torch.bool:
        t = (i + seed) % 3 == 0
    elif dtype.is_floating_point:
        t = ((k % 19).double() * 0.25 - 2.0).to(dtype)
    elif dtype == torch.uint8:
        t = (k % 251).to(dtype)
    else:
        t = (k % 23 - 11).to(dtype)
    return t.reshape(shape)


def raw_bytes(n, seed):
    return [(b * 37 + seed) & 0xFF for b in range(n)]


def same_bits(a, b):
    if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return False
    if a.dtype in INT_OF:
        return torch.equal(a.contiguous().view(INT_OF[a.dtype]), b.contiguous().view(INT_OF[b.dtype]))
    return torch.equal(a, b)


def storage_ptr(t):
    return t.untyped_storage().data_ptr() if hasattr(t, "untyped_storage") else t.storage().data_ptr()


def load(path, floats):
    """weights_only=True when this PyTorch can read the file that way; also mmap=True on 2.x."""
    if WEIGHTS_ONLY and (FLOATS_OK or not floats):
        obj = torch.load(path, weights_only=True)
        how = "weights_only=True"
    else:
        obj = torch.load(path)
        how = "plain"
    if MMAP_OK and WEIGHTS_ONLY:
        torch.load(path, weights_only=True, mmap=True)
        how += " (+mmap)"
    print("  loaded %s with %s" % (os.path.basename(path), how))
    return obj


def tiny_model():
    return torch.nn.ModuleDict({"conv": torch.nn.Conv2d(3, 4, 3), "bn": torch.nn.BatchNorm2d(4),
                                "fc": torch.nn.Linear(4, 10)})


def expected_state_dict():
    return collections.OrderedDict([
        ("conv.weight", fill(torch.float32, (4, 3, 3, 3), 1)), ("conv.bias", fill(torch.float32, (4,), 2)),
        ("bn.weight", fill(torch.float32, (4,), 3)), ("bn.bias", fill(torch.float32, (4,), 4)),
        ("bn.running_mean", fill(torch.float32, (4,), 5)), ("bn.running_var", fill(torch.float32, (4,), 6)),
        ("bn.num_batches_tracked", torch.tensor(12)),
        ("fc.weight", fill(torch.float32, (10, 4), 7)), ("fc.bias", fill(torch.float32, (10,), 8))])


def check_state_dict(sd, name):
    check(isinstance(sd, collections.OrderedDict), name + ": is an OrderedDict")
    want = expected_state_dict()
    check(list(sd.keys()) == list(want.keys()), name + ": keys in order")
    for k, v in want.items():
        check(k in sd and same_bits(sd[k], v), name + ": " + k + " bit-identical")
    md = getattr(sd, "_metadata", None)
    check(md == {"": {"version": 1}, "conv": {"version": 1}, "bn": {"version": 2}, "fc": {"version": 1}},
          name + ": _metadata")
    check(isinstance(md, collections.OrderedDict), name + ": _metadata is an OrderedDict")
    m = tiny_model()
    r = m.load_state_dict(sd, strict=True)
    check(not r.missing_keys and not r.unexpected_keys, name + ": load_state_dict(strict=True) matches")
    check(same_bits(m.fc.weight.detach(), want["fc.weight"]), name + ": fc.weight in the module")


def check_dir(d):
    p = lambda n: os.path.join(d, n)  # noqa: E731

    sd = load(p("state_dict.pth"), floats=False)
    check_state_dict(sd, "state_dict.pth")
    with zipfile.ZipFile(p("state_dict.pth")) as z:
        names = z.namelist()
        check(names[0] == "archive/data.pkl" and names[-1] == "archive/version", "state_dict.pth: record order")
        check(z.read("archive/version") == b"3\n", "state_dict.pth: version 3")
        check(z.testzip() is None, "state_dict.pth: every CRC-32 checks out")

    dt = load(p("dtypes.pth"), floats=False)
    names = ["float32", "float64", "float16", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool"]
    check(list(dt.keys()) == names + ["scalar_f64", "empty_i32"], "dtypes.pth: keys")
    for seed, n in enumerate(names):
        want = fill(getattr(torch, n), (3, 5), seed)
        check(same_bits(dt[n], want), "dtypes.pth: " + n + " bit-identical")
    check(same_bits(dt["scalar_f64"], fill(torch.float64, (), 3)), "dtypes.pth: 0-dim float64")
    check(dt["empty_i32"].shape == (0, 4) and dt["empty_i32"].dtype == torch.int32, "dtypes.pth: empty int32")

    v = load(p("views.pth"), floats=False)
    base, other = fill(torch.float32, (24,), 9), fill(torch.int64, (2, 6), 4)
    wants = {"base": base, "slice": base[5:17], "strided": base[1:24:3], "t": base.view(4, 6).t(),
             "cube": base.view(2, 3, 4).permute(2, 0, 1), "row": base.view(4, 6)[2],
             "expanded": base[0:1].expand(3, 5), "other": other, "other_col": other[:, 3]}
    for k, w in wants.items():
        t = v[k]
        check(same_bits(t, w), "views.pth: " + k + " values")
        check(t.stride() == w.stride() and t.storage_offset() == w.storage_offset(),
              "views.pth: %s layout %s/%d vs %s/%d" % (k, t.stride(), t.storage_offset(), w.stride(),
                                                        w.storage_offset()))
    for k in ["slice", "strided", "t", "cube", "row", "expanded"]:
        check(storage_ptr(v[k]) == storage_ptr(v["base"]), "views.pth: " + k + " shares base's storage")
    check(storage_ptr(v["other_col"]) == storage_ptr(v["other"]), "views.pth: other_col shares other's storage")
    check(storage_ptr(v["other"]) != storage_ptr(v["base"]), "views.pth: two storages")
    check(v["same_again"][0] is v["base"] and v["same_again"][1] is v["other"], "views.pth: repeated tensors")
    v["base"][5] = 100.0
    check(v["slice"][0].item() == 100.0, "views.pth: writing base shows through the view")

    ck = load(p("checkpoint.pth"), floats=True)
    check(ck["epoch"] == 3 and ck["arch"] == "tiny" and ck["best_acc1"] == 71.5, "checkpoint.pth: scalars")
    check(ck["history"] == [(1, 0.5), (2, 0.25)] and isinstance(ck["history"][0], tuple), "checkpoint.pth: history")
    check(ck["note"] == "h\u00e9llo \u2713", "checkpoint.pth: unicode str")
    check(ck["big"] == 2 ** 50 and ck["neg"] == -123456789012, "checkpoint.pth: large ints")
    check(ck["none"] is None and ck["flags"] == [True, False], "checkpoint.pth: None and bools")
    check_state_dict(ck["state_dict"], "checkpoint.pth state_dict")
    m = tiny_model()
    m.load_state_dict(ck["state_dict"])
    opt = torch.optim.SGD([m.conv.weight, m.conv.bias], lr=0.5, momentum=0.1)
    opt.load_state_dict(ck["optimizer"])
    g = opt.param_groups[0]
    check(g["lr"] == 0.1 and g["momentum"] == 0.9 and g["weight_decay"] == 0.0001 and g["nesterov"] is False,
          "checkpoint.pth: SGD param_group")
    mb = opt.state[m.conv.weight]["momentum_buffer"]
    check(same_bits(mb, fill(torch.float32, (4, 3, 3, 3), 21)), "checkpoint.pth: SGD momentum_buffer")
    m.conv.weight.grad = torch.ones_like(m.conv.weight)
    m.conv.bias.grad = torch.ones_like(m.conv.bias)
    opt.step()

    ad = load(p("adam.pth"), floats=True)
    pg = ad["param_groups"]
    check(pg[0]["betas"] == (0.9, 0.999) and pg[0]["betas"] is pg[1]["betas"], "adam.pth: shared betas tuple")
    check(pg[0]["eps"] == 1e-08 and pg[1]["lr"] == 0.01, "adam.pth: hyper-parameters")
    p0, p1 = torch.zeros(10, requires_grad=True), torch.zeros(4, requires_grad=True)
    opt = torch.optim.Adam([{"params": [p0]}, {"params": [p1]}])
    opt.load_state_dict(ad)
    st = opt.state[p0]
    check(st["step"].dtype == torch.float32 and st["step"].dim() == 0 and st["step"].item() == 2.0, "adam.pth: step")
    check(same_bits(st["exp_avg"], fill(torch.float32, (10,), 31)), "adam.pth: exp_avg")
    check(same_bits(opt.state[p1]["exp_avg_sq"], torch.full((4,), 0.25)), "adam.pth: exp_avg_sq")
    p0.grad, p1.grad = torch.ones(10), torch.ones(4)
    opt.step()
    check(opt.state[p0]["step"].item() == 3.0, "adam.pth: a step after loading")

    many = load(p("many.pth"), floats=False)
    base = fill(torch.int64, (2500,), 5)
    check(len(many) == 2500 and list(many)[:3] == ["p0", "p1", "p2"], "many.pth: 2500 keys in order")
    check(all(many["p%d" % i].dim() == 0 and many["p%d" % i].item() == base[i].item() for i in range(2500)),
          "many.pth: every 0-dim view")
    check(len({storage_ptr(t) for t in many.values()}) == 1, "many.pth: one storage")

    if hasattr(torch, "uint16") and VERSION >= (2, 3):
        nd = load(p("new_dtypes.pth"), floats=False)
        for seed, n in enumerate(["uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2"], start=40):
            t = nd[n]
            es = t.element_size()
            check(t.dtype == getattr(torch, n) and tuple(t.shape) == (2, 3), "new_dtypes.pth: " + n + " dtype")
            check(t.untyped_storage().tolist() == raw_bytes(6 * es, seed), "new_dtypes.pth: " + n + " bytes")
    else:
        print("  new_dtypes.pth: skipped (PyTorch %s has no uint16/uint32/uint64 tensors)" % torch.__version__)

    fo = load(p("folder.pth"), floats=False)
    check_state_dict(fo, "folder.pth")
    with zipfile.ZipFile(p("folder.pth")) as z:
        check(all(n.startswith("my.model/") for n in z.namelist()), "folder.pth: archive folder")


def main():
    print("PyTorch", torch.__version__)
    check_dir(sys.argv[1])
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
