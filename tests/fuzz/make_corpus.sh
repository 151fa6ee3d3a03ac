#!/usr/bin/env bash
# Builds the seed corpus of every harness from the fixtures, into OUT_DIR/corpus/<harness>/, and the merged
# dictionaries into OUT_DIR/dict/<harness>.dict. Seeds are copies (the fuzzer adds its finds beside them).
#   tests/fuzz/make_corpus.sh OUT_DIR [SUBDIR=corpus]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fx=$(cd "$here/../fixtures" && pwd)
out=${1:?usage: make_corpus.sh OUT_DIR}
c="$out/${2:-corpus}"
mkdir -p "$c" "$out/dict"
seed() {  # seed HARNESS FILES...
  local h=$1; shift
  mkdir -p "$c/$h"
  for f in "$@"; do [ -f "$f" ] && cp -p "$f" "$c/$h/$(basename "$f")"; done
  return 0
}
shopt -s nullglob
zips=("$fx"/ck_*.pth "$fx"/zip_*.pth "$fx"/zip_*.zip "$fx"/bad/*.pt)
pickles=("$fx"/pk_*.pkl "$fx"/sv_*.pkl "$fx"/bad/*.pkl)
seed fuzz_load "${zips[@]}" "$fx"/st_*.safetensors "$fx"/bad/bad_legacy*.pt
seed fuzz_zip "${zips[@]}"
seed fuzz_pickle "${pickles[@]}"
seed fuzz_legacy "$fx"/ck_*legacy*.pth "$fx"/bad/bad_legacy*.pt
seed fuzz_roundtrip "${pickles[@]}"
seed fuzz_safetensors "$fx"/st_*.safetensors "$fx"/bad/bad_safetensors.pt
# the pickle inside each zip fixture is a pickle seed too (any python3 will do; skipped without one)
if command -v python3 > /dev/null; then
  python3 - "$c/fuzz_pickle" "$c/fuzz_roundtrip" "${zips[@]}" <<'PY'
import sys, zipfile, os
dests, files = sys.argv[1:3], sys.argv[3:]
for f in files:
    try:
        with zipfile.ZipFile(f) as z:
            for n in z.namelist():
                if n.endswith("data.pkl"):
                    data = z.read(n)
                    for d in dests:
                        open(os.path.join(d, "zpkl_" + os.path.basename(f) + ".pkl"), "wb").write(data)
                    break
    except Exception:
        pass
PY
fi
# roundtrip's structured decoder: a few non-pickle starts
printf '\x09\x05\x00\x01\x02\x03\x04\x05\x06\x07' > "$c/fuzz_roundtrip/struct_dict"
printf '\x05\x09\x02\x03\x03\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c' > "$c/fuzz_roundtrip/struct_tensor"
cp "$here/pickle.dict" "$out/dict/fuzz_pickle.dict"
cp "$here/pickle.dict" "$out/dict/fuzz_roundtrip.dict"
cp "$here/pickle.dict" "$out/dict/fuzz_legacy.dict"
cp "$here/zip.dict" "$out/dict/fuzz_zip.dict"
cat "$here/zip.dict" "$here/pickle.dict" > "$out/dict/fuzz_load.dict"
cp "$here/safetensors.dict" "$out/dict/fuzz_safetensors.dict"
for h in "$c"/*; do echo "corpus $(basename "$h"): $(ls "$h" | wc -l) files"; done
