"""torchvision -> torchlet conformance for every ResNet architecture, generated at test time with real PyTorch
(the weight files are hundreds of MB, so they are made here rather than committed).

For each architecture (num_classes 10): torchvision builds the model with its own initialisation, BatchNorm affine
parameters are spread away from 1/0 and three train-mode forwards give non-trivial running statistics; the
state_dict is saved with torch.save. tests/interop/resnet_conformance.cpp (given as argv[1]) loads it strictly and
writes eval-mode float32 logits, the logits after fold_batchnorm, both again in channels-last layout, and a float64 train step's logits, loss and
gradients. Checked: float32 logits (plain, folded, channels-last) within 1e-4 of torchvision's, relative to the largest logit;
the float64 step within 1e-6 relative to each tensor's largest value (float64 on both sides: a train step through
BatchNorm over a few values per channel is ill-conditioned in float32). The float64 step runs for one architecture
of each kind of block (TRAIN_STEP_ARCHS: BasicBlock, Bottleneck, grouped Bottleneck; the deeper and wider ones
repeat the same layers and would take minutes), or for every architecture with --all-steps.
usage: /usr/bin/python3 resnet_conformance.py PATH/TO/resnet_conformance [--all-steps] [ARCH...]"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

ARCHS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
         "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"]
TRAIN_STEP_ARCHS = {"resnet18", "resnet50", "resnext50_32x4d"}


def last_conv(model):
    """Name of the last block's last conv weight (conv2 for BasicBlock, conv3 for Bottleneck)."""
    names = [n for n, _ in model.named_parameters() if n.startswith("layer4.") and ".conv" in n]
    return names[-1]


def grads_to_check(model):
    return ["conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
            "layer3.0.conv2.weight", last_conv(model), "fc.weight", "fc.bias"]


def relative_error(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return float("inf")
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def check_arch(exe, arch, seed, tmp, train_step):
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)(num_classes=10)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        model.train()
        for _ in range(3):
            model(torch.randn(4, 3, 64, 64))
    weights, inp, out = (os.path.join(tmp, f) for f in ("weights.pth", "input.npy", "out.pth"))
    torch.save(model.state_dict(), weights)
    x = torch.randn(2, 3, 64, 64)
    np.save(inp, x.numpy())
    model.eval()
    with torch.no_grad():
        eval_logits = model(x)
    names = grads_to_check(model) if train_step else []
    if train_step:
        model.double().train()
        train_logits = model(x.double())
        loss = F.cross_entropy(train_logits, torch.tensor([3, 7]))
        loss.backward()

    run = subprocess.run([exe, arch, weights, inp, out] + names, capture_output=True, text=True)
    if run.returncode != 0:
        return ["torchlet failed (exit %d): %s" % (run.returncode, (run.stderr or run.stdout).strip())]
    got = torch.load(out)
    checks = [("eval_logits", got["eval_logits"], eval_logits, 1e-4),
              ("folded_logits", got["folded_logits"], eval_logits, 1e-4),
              ("channels_last_logits", got["channels_last_logits"], eval_logits, 1e-4),
              ("channels_last_folded_logits", got["channels_last_folded_logits"], eval_logits, 1e-4)]
    if train_step:
        checks += [("train_logits", got["train_logits"], train_logits.detach(), 1e-6),
                   ("train_loss", got["train_loss"], loss.detach(), 1e-6)]
        checks += [("grad " + n, got["grad." + n], model.get_parameter(n).grad, 1e-6) for n in names]
    failures = []
    worst = {}
    for what, g, w, tol in checks:
        err = relative_error(g.numpy(), w.numpy())
        worst[tol] = max(worst.get(tol, 0.0), err)
        if not err <= tol:
            failures.append("%s: relative error %.3g > %g (shape %s, expected %s)" %
                            (what, err, tol, tuple(g.shape), tuple(w.shape)))
    step = "float64 step %.1e" % worst[1e-6] if train_step else "(no train step)"
    print("%-18s float32 logits %.1e, %s" % (arch, worst[1e-4], step), flush=True)
    return failures


def main():
    exe = sys.argv[1]
    all_steps = "--all-steps" in sys.argv[2:]
    archs = [a for a in sys.argv[2:] if a != "--all-steps"] or ARCHS
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2").split(",")[0] or 2))
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, arch in enumerate(archs):
            for f in check_arch(exe, arch, 100 + i, tmp, all_steps or arch in TRAIN_STEP_ARCHS):
                print("FAIL %s %s" % (arch, f), flush=True)
                failed += 1
    print("%d architectures, %d failures" % (len(archs), failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
