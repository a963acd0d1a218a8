#!/usr/bin/env bash
# MeRGAN Table 1 at the paper's budget (4000 iterations per task, digits 0..9
# one per task, every row) on one GPU, in one call that asks nothing.
#
#   bash benchmarks/accelerator_table1.sh prepare   # where pip reaches PyPI
#   bash benchmarks/accelerator_table1.sh           # on the GPU machine
#
# `prepare` stages into .accelerator/ (git-ignored, about 15 MB) what a GPU
# machine without network access may lack: the wheels of Keras and of its
# requirements that such machines' Python often lacks (namex, optree; for
# Python $TABLE1_TARGET_PYTHON, default 3.12), MNIST, and the cached MNIST
# evaluator. Copy the repository with .accelerator/ to the GPU machine.
#
# The run:
# 1. Uses $TABLE1_PYTHON (default python3) with the repository on PYTHONPATH.
#    When Keras does not import, it installs .accelerator/wheels/*.whl (each
#    one not already installed at that version) with `pip --no-index
#    --target .accelerator/site`, prepended to PYTHONPATH. Not a venv: a GPU
#    machine's python3 often lives in a venv holding its CUDA builds of JAX
#    and PyTorch, which a venv made from it does not see. A package still
#    missing is named, with the command that stages it, and the run stops.
# 2. Trains the rows through `benchmarks/table1.py --jobs N`: one process per
#    row, all at once, sharing the GPU: a DCGAN-32 step at batch 64 leaves a
#    GPU mostly idle between kernel launches, which rows side by side can
#    fill (yet to be confirmed by a timing on a GPU). JAX (the default backend) would
#    take 75% of the GPU's memory per process: each gets 0.9 / N of it
#    (XLA_PYTHON_CLIENT_MEM_FRACTION); TensorFlow grows its memory as needed
#    (TF_FORCE_GPU_ALLOW_GROWTH) and PyTorch's allocator does by itself.
#    The evaluator is trained (or loaded) once before the rows start.
# 3. Stops rows still training after $TABLE1_SECONDS (default 570) from the
#    script's start, minus time to write the report: the report then holds
#    the tasks they finished (a stopped row resumes from its last finished
#    task when run again).
# 4. Writes the report (.json, .md) and each row's last grid to
#    benchmarks/results/, and, when $OUT is set, copies the report, the log
#    (gzipped) and the grids (one .tar.gz) there.
#
# Settings (environment): TABLE1_ITERS (4000), TABLE1_TASKS (0-9),
# TABLE1_METHODS (jt,sft,ewc,dgr,jtr,ra,jtr+ra: the paper's rows and
# JTR+RA), TABLE1_BACKEND (jax), TABLE1_PRECISION (float32),
# TABLE1_EVAL_SAMPLES (1000), TABLE1_SECONDS (570), TABLE1_DATASET (MNIST:
# .accelerator/datasets/mnist.npz, else the shared copy, else Keras' cache),
# TABLE1_CHECKPOINT_EVERY (0: only finished tasks), TABLE1_RUNS
# (benchmarks/runs/table1), TABLE1_RESULTS (benchmarks/results),
# TABLE1_STAGE (.accelerator), TABLE1_PYTHON (python3).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STAGE=${TABLE1_STAGE:-$ROOT/.accelerator}
PYTHON=${TABLE1_PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
[ -d "$STAGE/site" ] && export PYTHONPATH="$STAGE/site:$PYTHONPATH"

say() { echo "[accelerator_table1 +${SECONDS}s] $*"; }

stage_mnist() {
  local candidate
  for candidate in "$STAGE/datasets/mnist.npz" "$ROOT/../shared/datasets/mnist.npz" \
    "$HOME/.keras/datasets/mnist.npz"; do
    if [ -f "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}

prepare() {
  local target_python=${TABLE1_TARGET_PYTHON:-3.12} keras_version mnist evaluators
  mkdir -p "$STAGE/wheels" "$STAGE/datasets" "$STAGE/evaluators"
  keras_version=$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("keras"))')
  say "wheels for Python $target_python: keras==$keras_version ${TABLE1_WHEELS:-namex optree}"
  # shellcheck disable=SC2086  # the wheel list is a list of words
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version "$target_python" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$STAGE/wheels" \
    "keras==$keras_version" ${TABLE1_WHEELS:-namex optree}
  if mnist=$(stage_mnist); then
    [ "$mnist" -ef "$STAGE/datasets/mnist.npz" ] || cp "$mnist" "$STAGE/datasets/mnist.npz"
  else
    say "no MNIST copy found: the run will need TABLE1_DATASET"
  fi
  evaluators=${KERAS_MERGAN_CACHE:-$HOME/.cache/keras_mergan/evaluators}
  if compgen -G "$evaluators/evaluator-mnist-*.keras" >/dev/null; then
    cp "$evaluators"/evaluator-mnist-*.keras "$STAGE/evaluators/"
  else
    say "no cached MNIST evaluator: the run will train it first"
  fi
  say "staged in $STAGE ($(du -sh "$STAGE" | cut -f1))"
}

# Installs the staged wheels that are not installed at their version.
install_wheels() {
  local wheels
  wheels=$("$PYTHON" - "$STAGE/wheels" <<'EOF'
import importlib.metadata as metadata
import sys
from pathlib import Path

for wheel in sorted(Path(sys.argv[1]).glob("*.whl")):
    name, version = wheel.name.split("-")[:2]
    try:
        if metadata.version(name) == version:
            continue
    except metadata.PackageNotFoundError:
        pass
    print(wheel)
EOF
  )
  if [ -n "$wheels" ]; then
    say "installing into $STAGE/site: $(echo "$wheels" | xargs -n1 basename | tr '\n' ' ')"
    # shellcheck disable=SC2086  # one path per word
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile \
      --disable-pip-version-check --target "$STAGE/site" --upgrade $wheels
    export PYTHONPATH="$STAGE/site:$PYTHONPATH"
  fi
}

check_imports() {
  KERAS_BACKEND=$BACKEND "$PYTHON" -c '
import importlib, sys
backend = sys.argv[1]
for name in ("keras", backend, "keras_mergan.run.training"):
    try:
        importlib.import_module(name)
    except ImportError as error:
        sys.exit(f"{name} does not import: {error}")
' "${BACKEND/tensorflow/tensorflow}"
}

if [ "${1:-run}" = prepare ]; then
  prepare
  exit 0
fi

BACKEND=${TABLE1_BACKEND:-jax}
ITERS=${TABLE1_ITERS:-4000}
TASKS=${TABLE1_TASKS:-0-9}
METHODS=${TABLE1_METHODS:-jt,sft,ewc,dgr,jtr,ra,jtr+ra}
PRECISION=${TABLE1_PRECISION:-float32}
EVAL_SAMPLES=${TABLE1_EVAL_SAMPLES:-1000}
BUDGET_SECONDS=${TABLE1_SECONDS:-570}
RESULTS=${TABLE1_RESULTS:-$ROOT/benchmarks/results}
LOG=$(mktemp -d)/accelerator_table1.log
IFS=, read -r -a rows <<<"$METHODS"
JOBS=${#rows[@]}

say "Table 1: ${METHODS} at $ITERS iterations x tasks $TASKS, $BACKEND ($PRECISION), $JOBS processes"
if ! check_imports 2>/dev/null; then
  if [ -d "$STAGE/wheels" ]; then install_wheels; fi
  if ! problem=$(check_imports 2>&1); then
    say "cannot start: ${problem##*$'\n'}"
    # What the staged distributions need and this Python lacks, by name.
    staged=$(find "$STAGE/wheels" -name '*.whl' -printf '%f\n' 2>/dev/null | cut -d- -f1 | paste -sd'|')
    "$PYTHON" -m pip check 2>/dev/null | grep -iE "^(${staged:-keras}) " | sed 's/^/  /' || true
    say "stage the missing wheels where pip reaches PyPI (TABLE1_WHEELS='namex optree NAME'" \
      "bash benchmarks/accelerator_table1.sh prepare), then copy .accelerator/ here"
    exit 2
  fi
fi

DATASET=${TABLE1_DATASET:-}
if [ -z "$DATASET" ] && ! DATASET=$(stage_mnist); then
  say "no MNIST: put mnist.npz in $STAGE/datasets/ (prepare does) or set TABLE1_DATASET"
  exit 2
fi
if [ -z "${KERAS_MERGAN_CACHE:-}" ] && [ -d "$STAGE/evaluators" ]; then
  export KERAS_MERGAN_CACHE=$STAGE/evaluators
fi

case $BACKEND in
  jax)
    XLA_PYTHON_CLIENT_MEM_FRACTION=$("$PYTHON" -c "print(f'{0.9 / $JOBS:.3f}')")
    export XLA_PYTHON_CLIENT_MEM_FRACTION
    export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$STAGE/jax-cache}
    ;;
  tensorflow) export TF_FORCE_GPU_ALLOW_GROWTH=true ;;
  torch) export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True} ;;
esac
devices=$(KERAS_BACKEND=$BACKEND "$PYTHON" -c \
  'from keras_mergan.backend import training_backend; print(*training_backend().training_devices())' \
  2>/dev/null) || devices="(unknown)"
say "devices: $devices"
case $devices in
  *[Gg][Pp][Uu]* | *cuda* | *CUDA*) ;;
  *) say "warning: no GPU among them: the rows train on the CPU" ;;
esac

deadline=$((BUDGET_SECONDS - SECONDS - 30))
say "training until +$((SECONDS + deadline))s at the latest; log: $LOG"
set +e
"$PYTHON" -u benchmarks/table1.py --budget paper --iters-per-task "$ITERS" \
  --tasks "$TASKS" --methods "$METHODS" --backend "$BACKEND" \
  --precision "$PRECISION" --dataset "$DATASET" --eval-samples "$EVAL_SAMPLES" \
  --jobs "$JOBS" --deadline "$deadline" \
  --checkpoint-every "${TABLE1_CHECKPOINT_EVERY:-0}" --grids \
  --runs "${TABLE1_RUNS:-$ROOT/benchmarks/runs/table1}" --results "$RESULTS" \
  2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
say "table1.py exited with $status"

mapfile -t written < <(sed -n 's/^Wrote //p' "$LOG")
if [ -n "${OUT:-}" ] && [ "${#written[@]}" -gt 0 ]; then
  mkdir -p "$OUT"
  grids=()
  for path in "${written[@]}"; do
    case $path in
      *.png) grids+=("$path") ;;
      *) cp "$path" "$OUT/" ;;
    esac
  done
  if [ "${#grids[@]}" -gt 0 ]; then
    stem=$(basename "${written[0]}" .json)
    tar -czf "$OUT/${stem}_grids.tar.gz" -C "$RESULTS" "${grids[@]##*/}"
  fi
  gzip -c "$LOG" >"$OUT/accelerator_table1.log.gz"
  say "copied to $OUT: $(ls "$OUT" | tr '\n' ' ')"
fi
exit "$status"
