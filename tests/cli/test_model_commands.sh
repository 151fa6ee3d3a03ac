#!/usr/bin/env bash
# torchlet predict / check / info against real torchvision (skipped, exit 77, without /usr/bin/python3 + torch).
# usage: test_model_commands.sh TORCHLET_EXE
set -euo pipefail
tool=$1
py=${TORCHLET_TORCH_PYTHON:-/usr/bin/python3}
"$py" -c "import torch, torchvision" 2>/dev/null || { echo "skipping: no torch/torchvision"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAILED: $*"; exit 1; }

"$py" - "$work" <<'PY'
import sys, numpy as np, torch, torchvision
d = sys.argv[1]
torch.manual_seed(0)
m = torchvision.models.resnet18(num_classes=10)
for mod in m.modules():  # non-trivial BatchNorm statistics
    if isinstance(mod, torch.nn.BatchNorm2d):
        mod.running_mean.uniform_(-0.2, 0.2); mod.running_var.uniform_(0.5, 1.5)
m.eval()
torch.save(m.state_dict(), d + "/r18.pth")
torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in m.state_dict().items()}}, d + "/dp.pth")
x = torch.randn(5, 3, 48, 48)
np.save(d + "/x.npy", x.numpy())
with torch.no_grad():
    np.save(d + "/ref.npy", m(x).numpy())
open(d + "/params.txt", "w").write("%d\n" % sum(p.numel() for p in torchvision.models.resnet50().parameters()))

# the classics: squeezenet1_1 weights and logits; parameter counts and multiply-adds at 224x224 counted by forward
# hooks on torchvision's own Conv2d and Linear layers (an independent count of what `info` prints)
sq = torchvision.models.squeezenet1_1(num_classes=10).eval()
torch.save(sq.state_dict(), d + "/sq.pth")
xs = torch.randn(3, 3, 80, 96)
np.save(d + "/xs.npy", xs.numpy())
with torch.no_grad():
    np.save(d + "/ref_sq.npy", sq(xs).numpy())
def macs(model):
    total = [0]
    def hook(m, inputs, out):
        if isinstance(m, torch.nn.Conv2d):
            total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total[0] += m.in_features * m.out_features
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 224, 224))
    return total[0]
with open(d + "/classics.txt", "w") as f:
    for arch in ["vgg16", "alexnet", "squeezenet1_0"]:
        m = getattr(torchvision.models, arch)()
        f.write("%s: %d parameters, %.3f G multiply-adds\n" % (arch, sum(p.numel() for p in m.parameters()), macs(m) / 1e9))
        del m
PY

echo "== predict: logits equal torchvision's"
"$tool" predict --arch resnet18 --num-classes 10 --weights "$work/r18.pth" --input "$work/x.npy" --output "$work/y.npy" --batch-size 2
"$py" -c "
import numpy as np, sys
a, b = np.load('$work/y.npy'), np.load('$work/ref.npy')
assert a.shape == (5, 10) and a.dtype == np.float32, (a.shape, a.dtype)
err = float(np.abs(a - b).max() / np.abs(b).max())
print('max relative difference', err)
sys.exit(0 if err < 1e-4 else 1)" || fail "predict logits differ"

echo "== predict with weights that do not fit: exit 1 with PyTorch's text"
status=0
"$tool" predict --arch resnet18 --weights "$work/r18.pth" --input "$work/x.npy" --output "$work/z.npy" 2>"$work/err" || status=$?
[ $status -eq 1 ] || fail "expected exit 1, got $status"
grep -q "size mismatch for fc.weight: copying a param with shape torch.Size(\[10, 512\]) from checkpoint" "$work/err" || fail "no PyTorch error text"
[ ! -e "$work/z.npy" ] || fail "output written despite the error"

echo "== check: a DataParallel checkpoint fails strictly, loads with --rename"
status=0
"$tool" check "$work/dp.pth" --arch resnet18 --num-classes 10 >"$work/check1" || status=$?
[ $status -eq 1 ] || fail "check should exit 1 without --rename"
grep -q "a strict load would fail" "$work/check1" || fail "check did not say the load fails"
"$tool" check "$work/dp.pth" --arch resnet18 --num-classes 10 --rename '^module\.=>' >"$work/check2" || fail "check with --rename"
grep -q "a strict load succeeds" "$work/check2" || fail "check did not say the load succeeds"
status=0
"$tool" check "$work/r18.pth" --arch resnet18 >"$work/check3" || status=$?
[ $status -eq 1 ] && grep -q "fc.weight" "$work/check3" || fail "check should report the fc shape mismatch"

echo "== info: parameter count and multiply-adds"
"$tool" info --arch resnet50 >"$work/info"
head -1 "$work/info"
grep -q "^resnet50: $(cat "$work/params.txt") parameters, 4.089 G multiply-adds" "$work/info" || fail "info numbers"
[ "$(grep -c ' float32$\| int64$' "$work/info")" -eq 320 ] || fail "info should list 320 state_dict entries"

echo "== classics: predict with squeezenet1_1, info numbers of vgg16, alexnet, squeezenet1_0"
"$tool" predict --arch squeezenet1_1 --num-classes 10 --weights "$work/sq.pth" --input "$work/xs.npy" --output "$work/ys.npy"
"$py" -c "
import numpy as np, sys
a, b = np.load('$work/ys.npy'), np.load('$work/ref_sq.npy')
assert a.shape == (3, 10) and a.dtype == np.float32, (a.shape, a.dtype)
err = float(np.abs(a - b).max() / np.abs(b).max())
print('max relative difference', err)
sys.exit(0 if err < 1e-4 else 1)" || fail "squeezenet1_1 predict logits differ"
grep -q "^vgg16: 138357544 parameters" "$work/classics.txt" || fail "torchvision's vgg16 count changed"
while read -r line; do
  arch=${line%%:*}
  "$tool" info --arch "$arch" >"$work/info_$arch"
  head -1 "$work/info_$arch"
  grep -qF "$line" "$work/info_$arch" || fail "info --arch $arch: expected '$line'"
done <"$work/classics.txt"
[ "$(grep -c ' float32$\| int64$' "$work/info_vgg16")" -eq 32 ] || fail "info should list 32 vgg16 state_dict entries"
"$tool" check "$work/sq.pth" --arch squeezenet1_1 --num-classes 10 | grep -q "a strict load succeeds" || fail "check squeezenet1_1"

echo "== usage errors exit 2"
status=0; "$tool" info >/dev/null 2>&1 || status=$?; [ $status -eq 2 ] || fail "info without --arch: exit $status"
status=0; "$tool" info --arch resnet7 >/dev/null 2>&1 || status=$?; [ $status -eq 1 ] || fail "unknown arch: exit $status"
echo "model commands: ok"
