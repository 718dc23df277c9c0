#!/usr/bin/env bash
# The GPU check: install ntp-probe, then answer on the device what the CPU could not (benchmarks/gpu_check.py):
# reverse G(2,5) to ≥ 0.99, steps/s and tokens/s at 2L×128 and 6L×384 (bf16, eager and --compile), the 20,000-graph
# eval, CPU vs CUDA on the same seed, a one-process torchrun, patch --count 500. Writes gpu-check.json and
# gpu-check.md under $OUT (default ./gpu-check-out). Budget: ≤ 8 minutes on one H100.
#
#   bash benchmarks/gpu_check.sh                          # on a GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --device cpu --tiny      # a dry run on the CPU at a tiny size (seconds)
#   OUT=dir GPU_CHECK_DEVICE=cpu GPU_CHECK_TINY=1 bash benchmarks/gpu_check.sh    # the same, by environment
#
# Options (or environment): --device cuda|cpu (GPU_CHECK_DEVICE), --tiny (GPU_CHECK_TINY=1), --out DIR (OUT),
# --no-install (GPU_CHECK_INSTALL=0: use the python on PATH as it is), --python PY (PYTHON: the interpreter the venv
# is made from). The install: a venv that sees the system's packages (the machine's CUDA build of torch), the project
# installed into it editable without its dependencies (the torch pin is not applied: pip would fetch a CPU or other
# build over the one the driver matches); any other dependency missing is then installed by pip, torch excepted.
set -euo pipefail

DEVICE="${GPU_CHECK_DEVICE:-cuda}"
TINY="${GPU_CHECK_TINY:-0}"
OUT="${OUT:-./gpu-check-out}"
INSTALL="${GPU_CHECK_INSTALL:-1}"
PY="${PYTHON:-python3}"
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --device=*) DEVICE="${1#*=}"; shift ;;
    --tiny) TINY=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    --out=*) OUT="${1#*=}"; shift ;;
    --no-install) INSTALL=0; shift ;;
    --python) PY="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "error: gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$DEVICE" in cpu|cuda|cuda:[0-9]*) ;; *) echo "error: --device $DEVICE: choose cpu or cuda" >&2; exit 2 ;; esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$ROOT"
T0=$(date +%s)

if [ "$INSTALL" != "0" ]; then
  VENV="${GPU_CHECK_VENV:-$ROOT/.venv-gpu-check}"
  echo "== install: $VENV (system site packages: the machine's torch)"
  "$PY" -m venv --system-site-packages "$VENV"
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
  python -m pip install --quiet --no-deps --no-build-isolation -e . \
    || python -m pip install --quiet --no-deps -e .
  missing=$(python - <<'PY'
import importlib.util
need = {"safetensors": "safetensors>=0.4", "typer": "typer>=0.12", "rich": "rich>=13", "textual": "textual>=0.80",
        "matplotlib": "matplotlib>=3.7"}
print(" ".join(spec for mod, spec in need.items() if importlib.util.find_spec(mod) is None))
PY
)
  if ! python -c "import torch" 2>/dev/null; then
    echo "error: no torch in $PY's site packages: install the CUDA build that matches the driver first" >&2; exit 2
  fi
  if [ -n "$missing" ]; then
    echo "== pip install $missing (torch left as it is)"
    python -m pip install --quiet $missing
  fi
fi
python -c "import torch, ntp_probe; print('torch', torch.__version__, '| CUDA', torch.version.cuda, '| GPU', torch.cuda.is_available() and torch.cuda.get_device_name())"
echo "== install done in $(( $(date +%s) - T0 )) s"

ARGS=(--device "$DEVICE" --out "$OUT")
[ "$TINY" != "0" ] && ARGS+=(--tiny)
set +e
python "$ROOT/benchmarks/gpu_check.py" "${ARGS[@]}"
rc=$?
set -e
echo "== gpu_check: exit $rc in $(( $(date +%s) - T0 )) s; $OUT/gpu-check.json, $OUT/gpu-check.md"
exit $rc
