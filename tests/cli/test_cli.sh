#!/usr/bin/env bash
# Tests of the `torchlet` command-line tool: bash tests/cli/test_cli.sh TOOL FIXTURE_DIR
#
# ls --json output is compared byte for byte with cli_*.json, written by tests/fixtures/gen/safetensors.py from
# an independent Python walk of the same objects (SHA-256 by Python's hashlib). Conversions are checked by
# listing the result (JSON compared with python3's json module, no PyTorch needed) and by byte equality.
set -u
TOOL=${1:?usage: test_cli.sh TOOL FIXTURE_DIR}
FX=${2:?usage: test_cli.sh TOOL FIXTURE_DIR}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
pass=0

ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect_status WANT CMD...: runs CMD, stdout to $TMP/out, stderr to $TMP/err; checks the exit status
expect_status() {
  local want=$1; shift
  "$@" >"$TMP/out" 2>"$TMP/err"
  local got=$?
  if [ "$got" -eq "$want" ]; then ok; else bad "exit $got (want $want): $*"; sed 's/^/  stderr: /' "$TMP/err"; fi
}

# one_line_error: stderr holds exactly one line
one_line_error() {
  local n
  n=$(wc -l <"$TMP/err")
  if [ "$n" -eq 1 ]; then ok; else bad "expected one stderr line, got $n: $*"; sed 's/^/  stderr: /' "$TMP/err"; fi
}

# same_tensors A.json B.json: the "tensors" arrays of two ls --json outputs are equal
same_tensors() {
  if python3 - "$1" "$2" <<'EOF'
import json, sys
a, b = (json.load(open(p))["tensors"] for p in sys.argv[1:3])
sys.exit(0 if a == b else 1)
EOF
  then ok; else bad "tensor lists differ: $1 vs $2"; fi
}

# ---- ls --json against the Python walk --------------------------------------------------------------------
for f in cli_sd.safetensors cli_ckpt.pth cli_module.pth cli_legacy.pth; do
  expect_status 0 "$TOOL" ls --json "$FX/$f"
  if cmp -s "$TMP/out" "$FX/${f%.*}.json"; then ok; else
    bad "ls --json $f differs from ${f%.*}.json"; diff <(tr ',' '\n' <"$TMP/out") <(tr ',' '\n' <"$FX/${f%.*}.json") | head -10
  fi
done

# ---- ls (text) -------------------------------------------------------------------------------------------
expect_status 0 "$TOOL" ls "$FX/cli_ckpt.pth"
grep -q '^optimizer.state.0.momentum_buffer  *torch.float32  *\[3, 4\]  *[0-9a-f]\{64\}$' "$TMP/out" && ok ||
  bad "ls text: momentum buffer line"
grep -qx 'epoch = 3' "$TMP/out" && ok || bad "ls text: epoch line"
grep -qx 'optimizer.param_groups.0.lr = 0.1' "$TMP/out" && ok || bad "ls text: lr line"
grep -q '^.*cli_ckpt.pth: pth, 15 tensors, 22 values$' "$TMP/out" && ok || bad "ls text: summary line"

# ---- convert ---------------------------------------------------------------------------------------------
# safetensors -> pth -> safetensors: the state_dict keeps its order, the file comes back byte for byte
expect_status 0 "$TOOL" convert "$FX/cli_sd.safetensors" "$TMP/sd.pth"
expect_status 0 "$TOOL" ls --json "$TMP/sd.pth"
cp "$TMP/out" "$TMP/sd_pth.json"
same_tensors "$TMP/sd_pth.json" "$FX/cli_sd.json"
expect_status 0 "$TOOL" convert "$TMP/sd.pth" "$TMP/sd2.safetensors"
cmp -s "$TMP/sd2.safetensors" "$FX/cli_sd.safetensors" && ok || bad "safetensors -> pth -> safetensors is not byte-identical"
# a checkpoint and a whole module -> safetensors: every tensor under its dotted key, in order
for f in cli_ckpt cli_module; do
  expect_status 0 "$TOOL" convert "$FX/$f.pth" "$TMP/$f.safetensors"
  expect_status 0 "$TOOL" ls --json "$TMP/$f.safetensors"
  cp "$TMP/out" "$TMP/$f.st.json"
  same_tensors "$TMP/$f.st.json" "$FX/$f.json"
done
expect_status 0 "$TOOL" convert "$FX/cli_ckpt.pth" "$TMP/x.safetensors"
grep -q 'note: 22 non-tensor values not stored' "$TMP/err" && ok || { bad "convert note"; cat "$TMP/err"; }
# pth -> pth keeps everything
expect_status 0 "$TOOL" convert "$FX/cli_ckpt.pth" "$TMP/ckpt.pth"
expect_status 0 "$TOOL" diff "$FX/cli_ckpt.pth" "$TMP/ckpt.pth"
expect_status 1 "$TOOL" convert "$FX/cli_ckpt.pth" "$TMP/out.npz"
one_line_error "convert to an unknown extension"

# ---- diff ------------------------------------------------------------------------------------------------
expect_status 0 "$TOOL" diff "$FX/cli_sd.safetensors" "$FX/cli_sd.safetensors"
grep -qx 'identical: 9 tensors, 1 values' "$TMP/out" && ok || bad "diff identical line"
expect_status 0 "$TOOL" diff "$FX/cli_sd.safetensors" "$TMP/sd2.safetensors"
# the trained state_dict against the untrained one written with the same seed: values differ, keys the same
expect_status 1 "$TOOL" diff "$FX/cli_sd.safetensors" "$FX/st_state_dict.safetensors"
grep -q '^values differ: 0.weight: max abs diff ' "$TMP/out" && ok || bad "diff: values differ line"
grep -qx 'only in A: __metadata__.format = '"'pt'" "$TMP/out" && ok || bad "diff: metadata only in A"
grep -q '^only in B: ' "$TMP/out" && bad "diff: nothing should be only in B" || ok
grep -q 'differences; max abs diff over 9 common tensors: ' "$TMP/out" && ok || bad "diff: summary line"
expect_status 1 "$TOOL" diff "$FX/cli_ckpt.pth" "$FX/cli_module.pth"
grep -q '^only in A: model.0.weight  torch.float32 \[3, 4\]$' "$TMP/out" && ok || bad "diff: only in A tensor"
grep -q '^only in B: 0.weight  torch.float32 \[3, 4\]$' "$TMP/out" && ok || bad "diff: only in B tensor"
grep -qx 'only in A: epoch = 3' "$TMP/out" && ok || bad "diff: only in A value"

# ---- refused files: exit 1 (diff: 2) and one line on stderr ----------------------------------------------
printf 'this is not a checkpoint at all\n' >"$TMP/garbage.pth"
head -c 100 "$FX/cli_sd.safetensors" >"$TMP/truncated.safetensors"
head -c 1000 "$FX/cli_ckpt.pth" >"$TMP/truncated.pth"
: >"$TMP/empty.pth"
for f in garbage.pth truncated.safetensors truncated.pth empty.pth missing.pth; do
  expect_status 1 "$TOOL" ls "$TMP/$f"
  one_line_error "ls $f"
  expect_status 1 "$TOOL" ls --json "$TMP/$f"
  one_line_error "ls --json $f"
  [ -s "$TMP/out" ] && bad "ls $f printed to stdout" || ok
done
expect_status 1 "$TOOL" convert "$TMP/garbage.pth" "$TMP/y.safetensors"
one_line_error "convert garbage"
[ -e "$TMP/y.safetensors" ] && bad "convert of a refused file left an output" || ok
expect_status 2 "$TOOL" diff "$TMP/garbage.pth" "$FX/cli_sd.safetensors"
one_line_error "diff garbage"

# ---- interop with real PyTorch (only where /usr/bin/python3 imports torch) --------------------------------
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  if /usr/bin/python3 - "$TMP/sd.pth" "$TMP/cli_ckpt.safetensors" "$FX/cli_ckpt.pth" <<'EOF'
import collections, json, struct, sys
import torch
sd = torch.load(sys.argv[1])
assert isinstance(sd, collections.OrderedDict), type(sd)
model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
model.load_state_dict(sd)  # strict
raw = open(sys.argv[2], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
ckpt = torch.load(sys.argv[3])
want = {"model." + k: v for k, v in ckpt["model"].items()}
want.update({"optimizer.state.%d.momentum_buffer" % i: s["momentum_buffer"] for i, s in ckpt["optimizer"]["state"].items()})
names = [k for k in header if k != "__metadata__"]
assert names == list(want), names
for k in names:
    b, e = header[k]["data_offsets"]
    t = torch.frombuffer(bytearray(raw[8 + n + b:8 + n + e]), dtype=want[k].dtype).reshape(header[k]["shape"])
    assert torch.equal(t, want[k]), k
EOF
  then ok; else bad "PyTorch interop (torch.load of a converted .pth, converted .safetensors read by hand)"; fi
else
  echo "note: /usr/bin/python3 cannot import torch; PyTorch interop checks skipped"
fi

# ---- usage -----------------------------------------------------------------------------------------------
expect_status 2 "$TOOL"
expect_status 2 "$TOOL" ls
expect_status 2 "$TOOL" frobnicate x
expect_status 2 "$TOOL" ls --yaml "$FX/cli_sd.safetensors"
expect_status 0 "$TOOL" --help

echo "$pass passed, $fails failed"
[ "$fails" -eq 0 ]
