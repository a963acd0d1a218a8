"""Where a JAX training step spends its time on the CPU, per kind of XLA op.

Usage::

    python benchmarks/jax_op_profile.py                       # float32 and bfloat16
    python benchmarks/jax_op_profile.py --precisions bfloat16 --iters 2

The step is the one `train_throughput.py` times (DCGAN-32 conditional
WGAN-GP, batch 64, 5 critic + 1 generator step per iteration, the
convolution implementation `auto` resolves to). Each precision runs in its
own subprocess under `KERAS_BACKEND=jax`: a few untimed iterations
(compilation), then `--iters` iterations inside `jax.profiler.trace`. The
trace's XLA op events are grouped by kind (the op name less its numeric
suffix: `ynn_fusion.47` and `ynn_fusion.68` are both `ynn_fusion`) and by
family:

- `matmul`: dots, whichever library runs them (`dot`, `dot_general`,
  `ynn_fusion`, oneDNN or XNNPACK fusions);
- `conversion`: fusions that convert between precisions (bfloat16 <->
  float32; XLA's CPU backend computes bfloat16 elementwise work in float32);
- `data movement`: concatenations, slices, pads, copies, transposes (the
  matmul convolutions' patch matrices and their gradients);
- `other`: elementwise and reduction fusions, control flow.

In bfloat16 XLA fuses the patch matrices' slices and pads into its
conversion fusions, so there `conversion` holds most of the data movement
too.

Writes `benchmarks/results/jax_op_profile.json` and `.md`: per precision,
milliseconds per iteration of each family and of the longest kinds, and
their share of the op time. Times are the ops' own (one core's thread
pool may run two at once, so shares are the meaningful figure).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import re
import sys
import tempfile
from pathlib import Path

from worker_process import print_result, run_worker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
PRECISIONS = ("float32", "bfloat16")
FAMILIES = ("matmul", "conversion", "data movement", "other")
TOP_KINDS = 12
_MATMUL = re.compile(r"^(dot|dot_general|ynn_fusion|xnn_fusion|onednn|__onednn)")
_MOVEMENT = ("concatenate", "slice", "pad", "copy", "transpose", "bitcast", "gather")


def op_kind(name: str) -> str:
    """The kind of an XLA op event: its name less a numeric suffix."""
    return re.sub(r"\.\d+$", "", name)


def op_family(kind: str) -> str:
    """`matmul`, `conversion`, `data movement` or `other` (see the module)."""
    if _MATMUL.match(kind):
        return "matmul"
    if "convert" in kind:
        return "conversion"
    parts = kind.removesuffix("_fusion").split("_")
    if parts and all(p in _MOVEMENT or p == "wrapped" for p in parts):
        return "data movement"
    return "other"


def _is_xla_op(name: str) -> bool:
    # Python frames are "$file:line name"; the rest of the runtime's events
    # (executors, executables) wrap the ops rather than being ops.
    return not (
        name.startswith("$")
        or "Thunk" in name
        or "ThreadPool" in name
        or "Executable" in name
        or "Pjit" in name
        or name.startswith("end: ")
    )


def summarize(events: list[dict], iterations: int) -> dict:
    """Per family and per kind: ms per iteration, share of op time, ops per
    iteration, from a Chrome trace's complete (`"ph": "X"`) events."""
    time_by_kind: collections.Counter = collections.Counter()
    count_by_kind: collections.Counter = collections.Counter()
    for event in events:
        if event.get("ph") != "X" or not _is_xla_op(event.get("name", "")):
            continue
        kind = op_kind(event["name"])
        time_by_kind[kind] += event["dur"]  # microseconds
        count_by_kind[kind] += 1
    total = sum(time_by_kind.values())
    if not total:
        raise ValueError("the trace holds no XLA op events")

    def entry(microseconds: float, count: int | None = None) -> dict:
        values = {
            "ms_per_iteration": round(microseconds / 1000 / iterations, 2),
            "share": round(microseconds / total, 4),
        }
        if count is not None:
            values["ops_per_iteration"] = round(count / iterations, 1)
        return values

    families = {family: 0.0 for family in FAMILIES}
    for kind, microseconds in time_by_kind.items():
        families[op_family(kind)] += microseconds
    return {
        "op_ms_per_iteration": round(total / 1000 / iterations, 1),
        "families": {name: entry(us) for name, us in families.items()},
        "kinds": {
            kind: {"family": op_family(kind), **entry(us, count_by_kind[kind])}
            for kind, us in time_by_kind.most_common()
        },
    }


def read_trace(folder: str | Path) -> list[dict]:
    """The events of the one Chrome trace `jax.profiler.trace(folder)` wrote."""
    (trace,) = Path(folder).rglob("*.trace.json.gz")
    with gzip.open(trace) as f:
        return json.load(f)["traceEvents"]


def worker(precision: str, iters: int, warmup: int) -> dict:
    """Profiles `iters` iterations of the step at `precision` in this process."""
    import jax
    from train_throughput import timed_gan

    _, fit = timed_gan("dcgan32", "auto", precision, max(iters, warmup))
    fit(warmup)
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder):
            seconds = fit(iters)
        events = read_trace(folder)
    return {
        "precision": precision,
        "iterations": iters,
        "s_per_iteration_traced": round(seconds / iters, 3),
        **summarize(events, iters),
    }


def markdown(results: list[dict], meta: dict) -> str:
    lines = [
        "# Where the JAX step's time goes (CPU)",
        "",
        "DCGAN-32 conditional WGAN-GP step as in `train_throughput.md` (batch 64, "
        "5 critic + 1 generator step per iteration, matmul convolutions), "
        f"{meta['iterations']} iterations traced with `jax.profiler` per precision. "
        "Op time is the XLA ops' own time, per iteration; families as in "
        "`benchmarks/jax_op_profile.py`.",
        "",
        f"Machine: {meta['cpus']} CPU(s), {meta['machine']}; "
        f"jax {meta['jax']}; XLA_FLAGS: `{meta['xla_flags'] or 'none'}`.",
        "",
        "| precision | s/it (traced) | op ms/it | "
        + " | ".join(f"{f} ms/it (share)" for f in FAMILIES)
        + " |",
        "|---|---:|---:|" + "---:|" * len(FAMILIES),
    ]
    for r in results:
        cells = [
            f"{r['families'][f]['ms_per_iteration']:.0f} "
            f"({100 * r['families'][f]['share']:.0f}%)"
            for f in FAMILIES
        ]
        lines.append(
            f"| {r['precision']} | {r['s_per_iteration_traced']:.3f} | "
            f"{r['op_ms_per_iteration']:.0f} | " + " | ".join(cells) + " |"
        )
    for r in results:
        lines += [
            "",
            f"Longest kinds, {r['precision']}:",
            "",
            "| kind | family | ms/it | share | ops/it |",
            "|---|---|---:|---:|---:|",
        ]
        for kind, k in list(r["kinds"].items())[:TOP_KINDS]:
            lines.append(
                f"| `{kind}` | {k['family']} | {k['ms_per_iteration']:.1f} | "
                f"{100 * k['share']:.1f}% | {k['ops_per_iteration']:g} |"
            )
    return "\n".join(lines) + "\n"


def _profile(precision: str, args) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        f"--worker={precision}",
        f"--iters={args.iters}",
        f"--warmup={args.warmup}",
    ]
    env = dict(os.environ, KERAS_BACKEND="jax")
    return run_worker(command, env, f"jax / {precision}", ROOT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--precisions",
        default=",".join(PRECISIONS),
        help="comma-separated: float32, bfloat16 (default: both)",
    )
    parser.add_argument("--iters", type=int, default=2, help="traced iterations")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # in the subprocess, KERAS_BACKEND=jax
        result = worker(args.worker, args.iters, args.warmup)
        print_result(result)
        return 0
    precisions = [p for p in args.precisions.split(",") if p]
    for name in precisions:
        if name not in PRECISIONS:
            parser.error(f"unknown precision {name!r}")
    results = [_profile(p, args) for p in precisions]
    import jax

    meta = {
        "iterations": args.iters,
        "cpus": os.cpu_count(),
        "machine": os.uname().machine,
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    text = markdown(results, meta)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "jax_op_profile.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2) + "\n"
    )
    (args.out / "jax_op_profile.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
