#!/usr/bin/env bash
# CI's shortened main job: runs examples/finetune_resnet on a subset and checks (1) the final test accuracy against
# a floor, (2) that a run stopped after an epoch and resumed ends with bit-identical weights, (3) that a damaged
# last.pth falls back to the newest good checkpoint, (4) that real PyTorch reopens last.pth and measures the same
# accuracy (skipped without PyTorch), (5) bad arguments, (6) the job on an image folder (--data folder:DIR).
# usage: run_finetune_checks.sh FINETUNE_EXE WORKDIR
set -euo pipefail
# this test runs alone (is_parallel: false): every core, whatever OMP_NUM_THREADS the test runner set
unset OMP_NUM_THREADS
exe=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work"
common=(--train-subset 1500 --test-subset 1000 --source-epochs 1 --epochs 2 --finetune-epochs 1 --batch-size 64
        --seed 3)
floor=60

fail() { echo "FAILED: $*"; exit 1; }
sha_of() { grep '^state_dict sha256:' "$1" | awk '{print $3}'; }
acc_of() { grep '^final test accuracy:' "$1" | awk '{print $4}' | tr -d '%'; }

echo "== 1. the whole run (accuracy floor ${floor}%)"
"$exe" "${common[@]}" --out "$work/a" --min-accuracy "$floor" >"$work/a.log" 2>&1 || { tail -30 "$work/a.log"; fail "run a"; }
grep -v 'ETA' "$work/a.log" | tail -12
[ -s "$work/a/metrics.csv" ] && [ -s "$work/a/metrics.svg" ] || fail "metrics.csv / metrics.svg missing"
grep -q '<svg' "$work/a/metrics.svg" || fail "metrics.svg is not an SVG"
[ "$(wc -l < "$work/a/metrics.csv")" -eq 4 ] || fail "metrics.csv should have a header and 3 epochs"

echo "== 2. stop after epoch 1, resume: bit-identical weights"
mkdir -p "$work/b" && cp "$work/a/source_resnet18.pth" "$work/b/"
"$exe" "${common[@]}" --out "$work/b" --stop-after 1 >"$work/b1.log" 2>&1 || { tail -30 "$work/b1.log"; fail "run b (stop)"; }
cp -r "$work/b" "$work/c"
"$exe" "${common[@]}" --out "$work/b" --resume "$work/b/last.pth" >"$work/b2.log" 2>&1 || { tail -30 "$work/b2.log"; fail "run b (resume)"; }
[ "$(sha_of "$work/a.log")" = "$(sha_of "$work/b2.log")" ] || fail "resumed weights differ: $(sha_of "$work/a.log") vs $(sha_of "$work/b2.log")"
[ "$(wc -l < "$work/b/metrics.csv")" -eq 4 ] || fail "resumed metrics.csv should have 3 epochs"
echo "resumed run: same state_dict sha256 $(sha_of "$work/b2.log")"

echo "== 3. a truncated last.pth falls back to the newest good checkpoint"
size=$(stat -c %s "$work/c/last.pth")
truncate -s $((size / 2)) "$work/c/last.pth"
"$exe" "${common[@]}" --out "$work/c" --resume "$work/c/last.pth" >"$work/c.log" 2>&1 || { tail -30 "$work/c.log"; fail "run c"; }
grep -q 'resume: skipped .*last.pth' "$work/c.log" || fail "no message about the damaged last.pth"
grep 'resume:' "$work/c.log"
[ "$(sha_of "$work/a.log")" = "$(sha_of "$work/c.log")" ] || fail "fallback run ends with different weights"

echo "== 4. PyTorch reopens last.pth and measures the same accuracy"
status=0
/usr/bin/python3 "$here/check_torch_accuracy.py" "$work/a/last.pth" "$(acc_of "$work/a.log")" 1000 || status=$?
if [ $status -eq 77 ]; then echo "(skipped: no PyTorch)"; elif [ $status -ne 0 ]; then fail "PyTorch's accuracy differs"; fi

echo "== 5. bad arguments: one line, exit 1, nothing overwritten"
out=$("$exe" --out /proc/forbidden 2>&1) && fail "an unwritable --out was accepted" || true
echo "$out"
[ "$(echo "$out" | wc -l)" -eq 1 ] || fail "expected one error line"
out=$("$exe" --weights "$work/missing.pth" --out "$work/d" 2>&1) && fail "a missing weights file was accepted" || true
echo "$out"
out=$("$exe" "${common[@]}" --arch resnet34 --resume "$work/a/last.pth" --out "$work/a" 2>&1) && fail "wrong --arch accepted" || true
echo "$out"
out=$("$exe" --data "folder:$work/no-such-folder" --out "$work/e" 2>&1) && fail "a missing image folder was accepted" || true
echo "$out"
[ "$(echo "$out" | wc -l)" -eq 1 ] || fail "expected one error line"
out=$("$exe" --device cuda --out "$work/e" 2>&1) && fail "--device cuda was accepted without the CUDA backend" || true
echo "$out"
[ "$(echo "$out" | wc -l)" -eq 1 ] || fail "expected one error line"
echo "$out" | grep -q "built without torchlet's CUDA backend" || fail "--device cuda: expected the no-backend message"

echo "== 6. the job on an image folder (PGM files of four Fashion-MNIST classes; accuracy floor 75%)"
bash "$here/make_image_folder.sh" "$work/images" 150
mkdir -p "$work/lonely/train/a"
out=$("$exe" --data "folder:$work/lonely" --out "$work/e" 2>&1) && fail "a folder without val/ was accepted" || true
echo "$out"
"$exe" --data "folder:$work/images" --image-size 28 --train-subset 0 --source-epochs 2 --epochs 3 --finetune-epochs 0 \
  --batch-size 32 --out "$work/f" --min-accuracy 75 >"$work/f.log" 2>&1 || { tail -30 "$work/f.log"; fail "run f (image folder)"; }
grep -q '2 classes (2_bag ... 3_ankle_boot), 300 train / 150 test images' "$work/f.log" || fail "image folder classes or counts"
grep -v 'ETA' "$work/f.log" | grep -E '^(epoch [0-9]+:|final test accuracy)'
echo "finetune checks: ok"
