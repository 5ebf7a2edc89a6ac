#!/usr/bin/env bash
# The GPU check: the figures a CPU box cannot give, on one GPU, in under 8 minutes.
#   bash bench/gpu_check.sh            (from the repository root, after `make setup`)
# Prints one table:
#   - small-20m tokens/s (bf16, compile), and d12 MFU under ddp and fsdp at world size 1
#   - the cockpit's GPU sampler (NVML: what the GPU panel shows) against
#     `nvidia-smi --query-gpu` sampled at the same moments, during the d12 run
#   - the probe's peak memory (torch's own allocator figures, through the rank log)
#     against torch.cuda.max_memory_allocated and NVML's per-process figure
#   - blocked_s (how long training paused) of a sync and an async checkpoint
# Each run is a real `python -m core.train` with a step budget; the run directories
# stay under logs/gpu-check-<time>/ to look at afterwards.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi finds none); run it on a machine with one" >&2
  exit 2
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: nvidia-smi sees a GPU but this torch has no CUDA (a CPU wheel?); install a CUDA build of torch" >&2
  exit 2
fi

OUT="logs/gpu-check-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
export OMP_NUM_THREADS=8
QUIET=(--set eval.every_steps=100000 --set eval.every_epoch=false --set 'gate.metrics={}'
       --set 'eval.samples.prompts=[]' --set train.epochs=null --set train.device=cuda
       --set train.dtype=bfloat16 --set train.compile=true --set train.print_every_s=10)

run() {  # run NAME PROFILE SECONDS SETS...: one training run, bounded in time
  local name=$1 profile=$2 limit=$3
  shift 3
  echo "gpu_check: $name ($profile) ..." >&2
  timeout "$limit" "$PY" -m core.train --profile "$profile" --run-dir "$OUT/$name" \
    "${QUIET[@]}" "$@" > "$OUT/$name.log" 2>&1
  echo "gpu_check: $name exit $?" >&2
}

# the data and tokenizer the profiles share, made once before anything is timed
run prepare small-20m 240 --set train.max_steps=1 --set train.compile=false \
  --set checkpoint.every_steps=100000 --set checkpoint.every_epoch=false

run small20m small-20m 120 --set train.max_steps=200 --set checkpoint.every_steps=100000 \
  --set checkpoint.every_epoch=false

# d12 ddp, with the GPU sampler and nvidia-smi read side by side while it trains, and
# a sync checkpoint at steps 60 and 120
"$PY" - "$OUT/gpu_samples.json" 90 > "$OUT/sampler.log" 2>&1 <<'EOF' &
import json, subprocess, sys, time
from cockpit.collect.gpu import GpuSampler
out, dur = sys.argv[1], float(sys.argv[2])
g, rows, t_end = GpuSampler(min_interval_s=0.0), [], time.time() + dur
time.sleep(30)  # past compile, into the steps
q = "utilization.gpu,memory.used,power.draw"
while time.time() < t_end:
    snap = g.sample()
    smi = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader,nounits", "-i", "0"],
                         capture_output=True, text=True).stdout.split(",")
    d = snap.devices[0] if snap.devices else None
    if d is not None and len(smi) == 3:
        rows.append({"ours": [d.util_pct, d.mem_used_mib, d.power_w],
                     "smi": [float(x) for x in smi]})
    time.sleep(2)
json.dump(rows, open(out, "w"))
EOF
SAMPLER=$!
run d12_ddp d12 200 --set train.max_steps=150 --set train.parallel=ddp \
  --set checkpoint.every_steps=60 --set checkpoint.every_epoch=false --set checkpoint.async=false
wait $SAMPLER

run d12_fsdp d12 150 --set train.max_steps=150 --set train.parallel=fsdp \
  --set checkpoint.every_steps=60 --set checkpoint.every_epoch=false --set checkpoint.async=true

# the probe, as the pre-flight runs it, on d12
"$PY" - "$OUT/probe.json" > "$OUT/probe.log" 2>&1 <<'EOF'
import json, sys
from cockpit.checks.base import Context
from cockpit.checks.cost import probe, probe_peak_mib
from core.config import load_profile
sets = ["train.device=cuda", "train.dtype=bfloat16", "train.compile=false"]
ctx = Context(load_profile("d12", sets), profile_ref="d12", sets=sets)
res = probe(ctx, 15, 240)
peak, src = probe_peak_mib(res, True)
json.dump({"peak_mib": peak, "from": src, "nvml_mib": res.get("peak_gpu_mib"),
           "max_alloc_mib": res.get("cuda_max_alloc_mib"),
           "max_reserved_mib": res.get("cuda_max_reserved_mib"), "steps": len(res["steps"])},
          open(sys.argv[1], "w"))
EOF

"$PY" - "$OUT" <<'EOF'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])

def events(name):
    p = out / name / "events.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.exists() else []

def steps(name, skip=30):
    s = [e for e in events(name) if e["type"] == "step"]
    return s[skip:] if len(s) > skip else []

def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None

def fmt(x, spec=",.0f", unit=""):
    return "n/a" if x is None else f"{x:{spec}}{unit}"

rows = []
s = steps("small20m")
rows.append(("small-20m tokens/s (bf16, compile)", fmt(med([e["tokens_per_s"] for e in s]))))
for name, label in (("d12_ddp", "d12 MFU, ddp, world 1"), ("d12_fsdp", "d12 MFU, fsdp, world 1")):
    s = steps(name)
    m = med([e.get("mfu") for e in s])
    rows.append((label, fmt(None if m is None else 100 * m, ".1f", "%")
                 + f"  ({fmt(med([e['tokens_per_s'] for e in s]))} tok/s)"))
try:
    g = json.loads((out / "gpu_samples.json").read_text())
except (OSError, ValueError):
    g = []
for i, what in enumerate(("utilisation %", "memory used MiB", "power W")):
    ours, smi = [r["ours"][i] for r in g], [r["smi"][i] for r in g]
    diffs = [abs(a - b) for a, b in zip(ours, smi) if a is not None]
    rows.append((f"GPU panel vs nvidia-smi: {what}",
                 f"{fmt(med(ours), ',.1f')} vs {fmt(med(smi), ',.1f')} (median; max |diff| "
                 f"{fmt(max(diffs) if diffs else None, ',.1f')} over {len(diffs)} samples)"))
try:
    pr = json.loads((out / "probe.json").read_text())
except (OSError, ValueError):
    pr = {}
rows.append(("probe peak MiB (its source)", f"{fmt(pr.get('peak_mib'))} ({pr.get('from', 'n/a')})"))
rows.append(("  torch max_memory_allocated / reserved MiB",
             f"{fmt(pr.get('max_alloc_mib'))} / {fmt(pr.get('max_reserved_mib'))}"))
rows.append(("  NVML per-process MiB", fmt(pr.get("nvml_mib"))))
for name, label in (("d12_ddp", "checkpoint blocked_s, sync (ddp)"),
                    ("d12_fsdp", "checkpoint blocked_s, async (fsdp, dcp)")):
    ck = [e for e in events(name) if e["type"] == "checkpoint"]
    b = med([e.get("blocked_s") for e in ck])
    w = med([e.get("seconds") for e in ck])
    rows.append((label, f"{fmt(b, '.2f', ' s')} (writing took {fmt(w, '.2f', ' s')}; {len(ck)} saves)"))
width = max(len(k) for k, _ in rows)
dev = next((e for e in events("d12_ddp") if e["type"] == "run_start"), {})
print(f"\ngpu_check on {dev.get('device', '?')}: peak {dev.get('peak_source', 'n/a')}")
print("-" * (width + 40))
for k, v in rows:
    print(f"{k:<{width}}  {v}")
print(f"\nrun directories and logs: {out}")
EOF
