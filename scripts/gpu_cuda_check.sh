#!/usr/bin/env bash
# Developer tooling (not shipped): the structural detector's inference on CUDA (AMP) and on the CPU of the same
# machine, one simulated 1 mm scan, outputs side by side under $OUT (run on the lent GPU machine).
set -uo pipefail
: "${OUT:?}"
if [ -d .devpkgs ]; then mkdir -p /tmp/site && for f in .devpkgs/*.tar.xz; do tar xJf "$f" -C /tmp/site; done; export PYTHONPATH=/tmp/site:$PWD; fi
export PYTHONUNBUFFERED=1
python3 -c "import sys; sys.path.insert(0, 'tests/benchmarks'); from bench_utils import one_scan_datalist; from pathlib import Path; one_scan_datalist(Path('/tmp/cc'), 11)" || exit 4
S='["configs/common.yaml","configs/unet/train.yaml","configs/unet/structural.yaml","configs/unet/inference.yaml","configs/unet/structural_inference.yaml"]'
for dev in cuda cpu; do
  t=$(date +%s)
  python3 -m monai.bundle run --config_file "$S" --datalist /tmp/cc/bench.json --output_dir /tmp/cc/out_$dev \
      --checkpoint models/structural_unet.pt --progress false --device "\$torch.device('$dev')" > /tmp/cc/$dev.log 2>&1 || { tail -5 /tmp/cc/$dev.log; }
  echo "$dev $(( $(date +%s) - t )) s"
  for f in $(find /tmp/cc/out_$dev -name "*.csv" | head -3); do cp "$f" "$OUT/${dev}_$(basename "$f")"; done
done
