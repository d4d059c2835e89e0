#!/usr/bin/env bash
# The prepared GPU check (docs/gpu.md): on a machine with CUDA, in under 8 minutes,
#   1. an environment: .venv if its torch sees the GPU, else the machine's own python3 (its CUDA
#      torch and Triton) with lpm installed into it without dependencies, plus the few pure-Python
#      packages such an image lacks, from wheels in .whl/ (no network needed there);
#   2. pytest -m cuda (CPU/CUDA equality of every fused kernel and of whole simulations);
#   3. a timing of the fused neighbor pull alone at N = 10M, E = 200M, d = 4 against its memory floor;
#   4. lpm bench gpu --json;
#   5. with the time left, the kernel oracle tests' CUDA cases (tests/kernels/test_kernel_ops.py).
# Everything goes to one folder: $OUT if set, else runs/gpu_check/.
#
#   scripts/gpu_check.sh            # on the CUDA machine
#   scripts/gpu_check.sh --wheels   # beforehand, where pip reaches the package index: fill .whl/
set -uo pipefail
# the fused kernels are opt-in (docs/gpu.md); this script measures them
export LPM_FUSED_KERNELS=1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
WHEELS="$ROOT/.whl"
# lpm's dependencies missing from a CUDA image that has torch, Triton and the scientific stack
# (see docs/gpu.md), at the versions constraints.txt pins; setuptools>=77 builds lpm itself.
EXTRA_PACKAGES="omegaconf powerlaw"

if [ "${1:-}" = "--wheels" ]; then
    mkdir -p "$WHEELS"
    for name in $EXTRA_PACKAGES; do
        pin=$(grep -i "^$name==" constraints.txt || echo "$name")
        python3 -m pip download --quiet --no-deps -d "$WHEELS" "$pin" || exit 1
    done
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$WHEELS" "setuptools>=77" || exit 1
    ls -l "$WHEELS"
    exit 0
fi

OUT="${OUT:-$ROOT/runs/gpu_check}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: >"$LOG"
START=$(date +%s)
BUDGET_S=${GPU_CHECK_BUDGET_S:-470}
note() { echo "[gpu_check +$(($(date +%s) - START))s] $*" | tee -a "$LOG"; }
left() { echo $((BUDGET_S - ($(date +%s) - START))); }

# ---------------------------------------------------------------- 1. environment
cuda_python() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }
if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"
elif [ -x .venv/bin/python ] && cuda_python .venv/bin/python; then
    PY="$ROOT/.venv/bin/python"
else
    # the machine's own python3 (on a CUDA image often a venv itself, whose packages a new venv would
    # not see): lpm and the missing pure-Python packages go into it, without dependencies or network
    PY="$(command -v python3)"
    pipi() { "$PY" -m pip install --quiet --no-index --no-deps --no-build-isolation --disable-pip-version-check "$@" \
        || "$PY" -m pip install --quiet --user --no-index --no-deps --no-build-isolation --disable-pip-version-check "$@"; }
    if [ -d "$WHEELS" ]; then
        if ! "$PY" -c 'import sys, setuptools; sys.exit(int(setuptools.__version__.split(".")[0]) < 77)' 2>/dev/null; then
            pipi "$WHEELS"/setuptools-* >>"$LOG" 2>&1
        fi
        for file in "$WHEELS"/*; do
            case "$file" in */setuptools-*) ;; *) pipi "$file" >>"$LOG" 2>&1 || note "could not install $file" ;; esac
        done
    fi
    pipi -e . >>"$LOG" 2>&1 || note "pip install -e . failed (see $LOG)"
fi
if ! cuda_python "$PY"; then
    note "no CUDA device visible to $PY: nothing to check"
    exit 1
fi
"$PY" - >"$OUT/env.txt" 2>&1 <<'EOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0))
try:
    import triton
    print("triton", triton.__version__)
except ImportError as err:
    print("triton: not importable:", err)
from lpm import kernels
for op in ("neighbor_pull", "neighbor_sum", "sum_over_followers"):
    print(op, [impl.name for impl in kernels.implementations(op)])
EOF
nvidia-smi >>"$OUT/env.txt" 2>&1
cat "$OUT/env.txt" | tee -a "$LOG"

# ---------------------------------------------------------------- 2. tests
note "pytest -m cuda"
budget=$(($(left) - 200)); [ "$budget" -gt 60 ] || budget=60
timeout "$budget" "$PY" -m pytest -q -p no:cacheprovider -m cuda --continue-on-collection-errors \
    --junitxml "$OUT/pytest_cuda.xml" tests >"$OUT/pytest_cuda.log" 2>&1
TESTS_RC=$?
grep -E "^(FAILED|ERROR)|Greatest|passed|failed" "$OUT/pytest_cuda.log" | tail -n 40 | tee -a "$LOG"
note "pytest -m cuda exit code $TESTS_RC"

# ---------------------------------------------------------------- 3. the fused pull alone
note "fused neighbor pull at N = 10M, E = 200M, d = 4"
timeout 100 "$PY" - >"$OUT/pull_bench.json" 2>>"$LOG" <<'EOF'
import json, torch
from lpm import kernels
from lpm.kernels import registry

dev, n, deg, d = torch.device("cuda"), 10_000_000, 20, 4
e = n * deg
gen = torch.Generator(device=dev).manual_seed(0)
rowptr = torch.arange(0, e + 1, deg, device=dev, dtype=torch.int32)
col = torch.randint(0, n, (e,), device=dev, generator=gen, dtype=torch.int32)
row = torch.arange(n, device=dev, dtype=torch.int32).repeat_interleave(deg)
in_weight = torch.full((n,), float(deg), device=dev)
x = torch.rand(1, n, d, device=dev, generator=gen) * 2 - 1
pair = kernels.SmoothBoundedConfidence(eps=0.3, tau=0.05)
fused = kernels.lookup("neighbor_pull", dev, torch.float32, kernels.SmoothBoundedConfidence)
args = (rowptr, col, row, None, in_weight)


def ms(fn, reps=10):
    fn(); torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record(); torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def backward():
    xg = x.detach().requires_grad_()
    pull, weight = fused(*args, xg, pair, None)
    torch.autograd.grad((pull.sum() + weight.sum()), xg)


big = torch.empty(2 * 1024**3, dtype=torch.uint8, device=dev)
copy_ms = ms(lambda: big.clone(), 5)
bandwidth = 2 * big.numel() / (copy_ms / 1e3)  # bytes read + written per second (BENCHMARKS.md section 2)
del big
compulsory = (n + 1) * 4 + e * 4 + 2 * n * d * 4  # rowptr, col, x once, the output
no_reuse = (n + 1) * 4 + e * (4 + 32) + 2 * n * d * 4  # a 32-byte sector per gathered neighbour
forward_ms = ms(lambda: fused(*args, x, pair, None))
result = {"device": torch.cuda.get_device_name(0), "N": n, "E": e, "d": d,
          "fused": fused is not registry.OPS["neighbor_pull"], "forward_ms": forward_ms,
          "forward_backward_ms": ms(backward, 3), "copy_bandwidth_bytes_per_s": bandwidth,
          "floor_compulsory_ms": compulsory / bandwidth * 1e3, "floor_no_reuse_ms": no_reuse / bandwidth * 1e3,
          "forward_over_no_reuse_floor": forward_ms / (no_reuse / bandwidth * 1e3),
          "peak_memory_bytes": torch.cuda.max_memory_allocated()}
print(json.dumps(result, indent=1))
EOF
note "pull bench exit code $? -> $OUT/pull_bench.json"
cat "$OUT/pull_bench.json" | tee -a "$LOG"

# ---------------------------------------------------------------- 4. lpm bench gpu
if "$PY" -m lpm bench gpu --help >/dev/null 2>&1; then
    note "lpm bench gpu ($(left) s left)"
    timeout $(($(left) - 60 > 30 ? $(left) - 60 : 30)) "$PY" -m lpm bench gpu --json "$OUT/bench_gpu.json" \
        >"$OUT/bench_gpu.log" 2>&1
    note "lpm bench gpu exit code $?"
    tail -n 40 "$OUT/bench_gpu.log" | tee -a "$LOG"
else
    note "lpm bench gpu: this checkout has no such subcommand; skipped (it comes with the CPU/GPU bench work)"
fi
# ---------------------------------------------------------------- 5. the oracle tests' CUDA cases
# last, with the time left: their float64 gradchecks launch thousands of kernels (over 200 s on an
# H200), and the timings above should come back even when these do not finish
note "the kernel oracle tests on CUDA ($(left) s left)"
timeout $(($(left) > 20 ? $(left) : 20)) "$PY" -m pytest -q -p no:cacheprovider -k cuda \
    tests/kernels/test_kernel_ops.py >"$OUT/pytest_oracle.log" 2>&1
ORACLE_RC=$?
grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/pytest_oracle.log" | tail -n 20 | tee -a "$LOG"
note "oracle tests exit code $ORACLE_RC (124: out of time)"
[ "$TESTS_RC" -ne 0 ] || TESTS_RC=$ORACLE_RC
note "done; results in $OUT"
exit $TESTS_RC
