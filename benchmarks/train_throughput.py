"""Training throughput of the DCGAN-32 conditional WGAN-GP, per Keras backend.

Usage::

    python benchmarks/train_throughput.py                   # all backends
    python benchmarks/train_throughput.py --backends jax --iters 20
    python benchmarks/train_throughput.py --implementations auto,stock
    python benchmarks/train_throughput.py --precisions bfloat16
    python benchmarks/train_throughput.py --plain none        # no PyTorch peer

One iteration is one Keras ``fit`` step of ``ConditionalWGANGP``: 5 critic
steps and 1 generator step at batch 64 (10 classes, 1 channel, 32x32), which
consumes 5 * 64 random images in [-1, 1]. Each (backend, convolution
implementation, precision) runs in its own subprocess with ``KERAS_BACKEND``
set:
``--warmup`` iterations (tracing / compilation), then ``--repeats`` timed
``fit`` calls of ``--iters`` iterations each. The machine may be shared, so
the median of the repeats is reported (s/it, it/s, GFLOP/s, target) with the
best one beside it; "met?" says "best only" when only the best timing
reaches the target.

``--implementations`` chooses how the strided and transposed convolutions
run (``conv_implementation`` of ``build_dcgan_generator`` /
``build_dcgan_critic``): ``auto`` (matmul forms under JAX on CPU, the
backend's own ops elsewhere), ``native`` (the backend's conv ops in the
keras_mergan layers), ``matmul``, or ``stock``: the same architecture built
from stock Keras layers (Conv2D, Conv2DTranspose, LeakyReLU), i.e. the model
before the fast layers: ``auto,stock`` is an after/before comparison in one
run (``auto`` alone by default). An implementation that resolves to one
already measured for that backend is skipped.

``--plain`` (default ``eager,compile``) also times the peer: the same step
written as a plain PyTorch training loop (``benchmarks/plain_torch.py``:
``torch.nn`` layers, channels-first, ``torch.optim.Adam``), eager and
through ``torch.compile``, in each precision (bfloat16 = ``torch.autocast``),
in a subprocess of its own like the backends, on the same data sizes. Its
rows say ``plain`` in the JSON ``implementation`` field (the package's say
``keras-mergan``; ``convolutions`` is then the conv implementation, "native"
for the peer's ``nn.Conv2d`` / ``nn.ConvTranspose2d``). The peer table
gives, per precision and peer mode, the package's fastest backend's s/it
and its PyTorch backend's over the peer's (targets: at most 1.0 and 1.15).

``--precisions`` (default ``float32,bfloat16``) builds the networks inside
``keras_mergan.backend.precision.precision_scope``: ``bfloat16`` is Keras'
``mixed_bfloat16`` policy with the package's float32 heads, batch-norm
statistics and losses. "x float32" is a row's speed over the float32 row of
the same backend and implementation, measured in the same run.

FLOPs are counted analytically, not measured: 2 per multiply-add of the
convolution and dense layers (useful work: the zero taps of the sub-pixel
form, biases, normalisation, activations and the optimizer are not counted),
every backward product (data gradient, weight gradient) costing one forward,
and no input gradient that nothing uses. With F_G, F_D the forward FLOPs of
generator and critic at batch 64 and F_G1, F_D1 those of their first layer:

- critic step: F_G (fakes) + 3 F_D (real, fake, interpolates) + F_D (input
  gradient of the penalty) + 2 (2 F_D - F_D1) (weight and data gradients of
  the real and fake passes) + 2 F_D (the penalty's double backprop: weight
  gradient and propagation through every data-gradient product)
  = F_G + 10 F_D - 2 F_D1;
- generator step: F_G + F_D (forward) + F_D (critic data gradient) + 2 F_G -
  F_G1 (generator weight and data gradients) = 3 F_G - F_G1 + 2 F_D;
- iteration: n_critic * critic step + generator step (about 52 GFLOP).

Peak: the best of timed 2048x2048 matmuls (``keras.ops.matmul``) in the
row's precision, in the same backend and process; the float32 and bfloat16
peaks are both reported. Writes ``benchmarks/results/
train_throughput.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from worker_process import print_result, run_worker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
BACKENDS = ("tensorflow", "jax", "torch")
IMPLEMENTATIONS = ("auto", "native", "matmul", "stock")
# The keras_mergan layers and the stock Keras layers they stand in for.
STOCK_LAYERS = {
    "SubPixelConv2DTranspose": "Conv2DTranspose",
    "SpaceToDepthConv2D": "Conv2D",
    "PenaltyLeakyReLU": "LeakyReLU",
}
TARGETS = {"tensorflow": 4.0, "jax": 2.0, "torch": 2.0}  # iterations per second
# The peer's modes; the package's fastest backend / peer and its torch
# backend / peer (s/it ratios, same precision) aim at most at these.
PLAIN_MODES = ("eager", "compile")
PEER_TARGETS = {"fastest": 1.0, "torch": 1.15}
PLAIN_LABELS = {"eager": "eager", "compile": "torch.compile"}
PRECISIONS = ("float32", "bfloat16")
# task_switch_s: methods timed over SWITCH_TASKS tasks of SWITCH_STEPS steps.
# EWC's Fisher and DGR's solver snapshot are per-task work of their own,
# reported beside the four whose switch is only bookkeeping.
SWITCH_METHODS = ("sft", "jt", "jtr", "ra", "ewc", "dgr")
SWITCH_TASKS = 3
SWITCH_STEPS = 4
BATCH, N_CRITIC = 64, 5
# Architecture -> (classes, channels, image size, description). resnet64 is
# WGAN-GP's 64x64 ResNet at its width 64, as for LSUN's 4 scene categories.
ARCHITECTURES = {
    "dcgan32": (10, 1, 32, "DCGAN-32"),
    "resnet64": (4, 3, 64, "ResNet-64 (width 64)"),
}


def _layer_flops(layer) -> int:
    """Forward FLOPs per sample of a Dense / Conv2D / Conv2DTranspose layer."""
    import keras

    if isinstance(layer, keras.layers.Dense):
        return 2 * int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
    if isinstance(layer, keras.layers.Conv2DTranspose):
        kh, kw, filters, channels = layer.kernel.shape
        _, h, w, _ = layer.input.shape  # every input pixel meets every tap
        return 2 * h * w * kh * kw * channels * filters
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, channels, filters = layer.kernel.shape
        _, h, w, _ = layer.output.shape
        return 2 * h * w * kh * kw * channels * filters
    return 0


def stock_model(model):
    """The same architecture built from stock Keras layers (weights not kept).

    This is the model as it was before the matmul convolutions and the
    penalty-friendly leaky ReLU: the "before" of a before/after comparison.
    """
    import keras

    config = model.get_config()
    for layer in config["layers"]:
        stock = STOCK_LAYERS.get(layer["class_name"])
        if stock:
            layer.update(module="keras.layers", class_name=stock, registered_name=None)
            layer["config"].pop("implementation", None)
    return keras.Model.from_config(config)


def _network_flops(model, batch: int) -> tuple[int, int]:
    """(forward FLOPs, FLOPs of the first weight layer) at `batch`."""
    flops = [_layer_flops(layer) for layer in model.layers]
    flops = [f for f in flops if f]
    return batch * sum(flops), batch * flops[0]


def iteration_flops(generator, critic, batch: int, n_critic: int) -> dict:
    """Analytic FLOPs of one WGAN-GP iteration (see the module docstring)."""
    f_g, f_g1 = _network_flops(generator, batch)
    f_d, f_d1 = _network_flops(critic, batch)
    critic_step = f_g + 10 * f_d - 2 * f_d1
    generator_step = 3 * f_g - f_g1 + 2 * f_d
    return {
        "generator_forward": f_g,
        "critic_forward": f_d,
        "critic_step": critic_step,
        "generator_step": generator_step,
        "iteration": n_critic * critic_step + generator_step,
    }


def _sync(x):
    import keras

    if keras.config.backend() == "jax":
        x.block_until_ready()  # JAX dispatches asynchronously
    return x


def matmul_peak(
    dtype: str = "float32", size: int = 2048, calls: int = 5, repeats: int = 5
) -> float:
    """Best GFLOP/s of `dtype` `size` x `size` matmuls in the active backend."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (
        keras.ops.convert_to_tensor(rng.standard_normal((size, size)), dtype)
        for _ in range(2)
    )
    _sync(keras.ops.matmul(a, b))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            out = keras.ops.matmul(a, b)
        _sync(out)
        best = min(best, (time.perf_counter() - start) / calls)
    return 2 * size**3 / best / 1e9


def build_networks(architecture: str, conv: str):
    from keras_mergan.models import (
        build_dcgan_critic,
        build_dcgan_generator,
        build_resnet_critic,
        build_resnet_generator,
    )

    classes, channels, size, _ = ARCHITECTURES[architecture]
    if architecture == "resnet64":
        return (
            build_resnet_generator(classes, channels, image_size=size),
            build_resnet_critic(classes, channels, image_size=size),
        )
    return (
        build_dcgan_generator(classes, channels, conv_implementation=conv),
        build_dcgan_critic(classes, channels, conv_implementation=conv),
    )


def timed_gan(architecture: str, implementation: str, precision: str, steps: int):
    """The benchmarked GAN (seeded) and `fit(n)`: `n` iterations (at most
    `steps`) on random images, returning their seconds."""
    import keras
    import numpy as np

    from keras_mergan.backend.precision import precision_scope
    from keras_mergan.methods.conditional_wgan_gp import ConditionalWGANGP

    keras.utils.set_random_seed(0)
    conv = "native" if implementation == "stock" else implementation
    with precision_scope(precision):
        networks = build_networks(architecture, conv)
        if implementation == "stock":
            networks = [stock_model(model) for model in networks]
    gan = ConditionalWGANGP(*networks, n_critic=N_CRITIC, seed=0)
    gan.compile()
    num_classes, channels, size, _ = ARCHITECTURES[architecture]
    per_step = N_CRITIC * BATCH
    rng = np.random.default_rng(0)
    shape = (steps * per_step, size, size, channels)
    images = rng.uniform(-1, 1, shape).astype("float32")
    labels = rng.integers(0, num_classes, steps * per_step).astype("int32")

    def fit(n):
        start = time.perf_counter()
        gan.fit(
            images[: n * per_step],
            labels[: n * per_step],
            batch_size=per_step,
            epochs=1,
            steps_per_epoch=n,
            shuffle=False,
            verbose=0,
        )
        return time.perf_counter() - start

    return gan, fit


def worker(
    architecture: str,
    implementation: str,
    precision: str,
    iters: int,
    warmup: int,
    repeats: int,
) -> dict:
    """Measures one (backend, implementation, precision) in this process."""
    import keras

    from keras_mergan.backend import training_backend

    backend = keras.config.backend()
    resolved = implementation
    if implementation == "auto":
        matmul = training_backend().prefer_matmul_convolutions()
        resolved = "matmul" if matmul else "native"
    gan, fit = timed_gan(architecture, implementation, precision, max(iters, warmup))
    warmup_s = fit(warmup)
    seconds = [fit(iters) / iters for _ in range(repeats)]
    flops = iteration_flops(gan.generator, gan.critic, BATCH, N_CRITIC)
    # The stock layers stand for the model before the fast ones: their
    # throughput is the point, not the methods' task boundaries.
    switch = None
    if implementation != "stock":
        switch = task_switch_seconds(architecture, implementation, precision)
    return {
        "backend": backend,
        "architecture": architecture,
        "implementation": "keras-mergan",
        "convolutions": implementation,
        "resolved_convolutions": resolved,
        "precision": precision,
        "jit_compile": bool(gan.jit_compile),
        "task_switch_s": switch,
        **_timings(warmup_s, seconds, flops),
    }


def task_switch_seconds(architecture: str, conv: str, precision: str) -> dict:
    """Per method: a task's start to its first iteration, less one iteration.

    Median over the tasks after the first, whose step is compiled already: what
    a task boundary costs (begin_task's snapshot and optimizer reset, EWC's
    Fisher, any retrace) beyond the iteration itself, whose time is the median
    of the task's later iterations.
    """
    import keras
    import numpy as np

    from keras_mergan.backend.precision import precision_scope
    from keras_mergan.data.tasks import TaskSequence, TaskStream
    from keras_mergan.methods import METHODS

    class TaskClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.per_task = []

        def on_epoch_begin(self, epoch, logs=None):
            self.per_task.append([time.perf_counter()])

        def on_train_batch_end(self, batch, logs=None):
            self.per_task[-1].append(time.perf_counter())

        def switch_seconds(self) -> float:
            switches = []
            for times in self.per_task[1:]:
                gaps = np.diff(times)
                switches.append(float(gaps[0] - np.median(gaps[1:])))
            return statistics.median(switches)

    classes, channels, size, _ = ARCHITECTURES[architecture]
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (256, size, size, channels)).astype("float32")
    labels = (np.arange(256) % SWITCH_TASKS).astype("int32")
    result = {}
    for name in SWITCH_METHODS:
        method = METHODS[name]
        with precision_scope(precision):
            generator, critic = build_networks(architecture, conv)
        gan = method.model_class(generator, critic, n_critic=N_CRITIC, seed=0)
        gan.compile()
        tasks = [[t] for t in range(SWITCH_TASKS)]
        if method.cumulative:
            tasks = [list(range(t + 1)) for t in range(SWITCH_TASKS)]
        stream = TaskStream(images, labels, tasks, SWITCH_STEPS, BATCH, N_CRITIC)
        clock = TaskClock()
        gan.fit(
            stream,
            epochs=SWITCH_TASKS,
            steps_per_epoch=SWITCH_STEPS,
            # The clock first: a task's start includes TaskSequence's work.
            callbacks=[clock, TaskSequence(stream)],
            verbose=0,
        )
        result[name] = clock.switch_seconds()
    return result


def _timings(warmup_s: float, seconds: list[float], flops: dict) -> dict:
    """The timing fields every worker's result has, the matmul peaks included."""
    return {
        "warmup_s": warmup_s,
        "s_per_it": seconds,
        "median_s_per_it": statistics.median(seconds),
        "best_s_per_it": min(seconds),
        "flops": flops,
        "peak_gflops_by_precision": {dtype: matmul_peak(dtype) for dtype in PRECISIONS},
    }


def plain_worker(
    mode: str, precision: str, iters: int, warmup: int, repeats: int
) -> dict:
    """Times the plain PyTorch loop (`benchmarks/plain_torch.py`) in this process.

    Runs under `KERAS_BACKEND=torch`: Keras builds the package's networks
    only to count their FLOPs and to time the matmul peaks, as for the
    package's torch rows.
    """
    import torch

    from benchmarks import plain_torch

    num_classes, channels, size, _ = ARCHITECTURES["dcgan32"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    generator = plain_torch.Generator(num_classes, channels).to(device)
    critic = plain_torch.Critic(num_classes, channels, size).to(device)
    step = plain_torch.PlainWGANGP(
        generator, critic, N_CRITIC, compiled=mode == "compile", precision=precision
    )
    per_step = N_CRITIC * BATCH
    steps = max(iters, warmup)
    images = torch.rand(steps * per_step, channels, size, size, device=device)
    images = images * 2 - 1
    labels = torch.randint(0, num_classes, (steps * per_step,), device=device)

    def fit(n):
        start = time.perf_counter()
        for i in range(n):
            batch = slice(i * per_step, (i + 1) * per_step)
            losses = step.train_step(images[batch], labels[batch])
        float(losses["generator_loss"])  # waits for the device
        return time.perf_counter() - start

    warmup_s = fit(warmup)
    seconds = [fit(iters) / iters for _ in range(repeats)]
    keras_generator, keras_critic = build_networks("dcgan32", "native")
    return {
        "backend": "torch",
        "architecture": "dcgan32",
        "implementation": "plain",
        "convolutions": "native",
        "resolved_convolutions": "native",
        "precision": precision,
        "mode": mode,
        "jit_compile": mode == "compile",
        **_timings(
            warmup_s,
            seconds,
            iteration_flops(keras_generator, keras_critic, BATCH, N_CRITIC),
        ),
    }


def _case(result: dict) -> tuple:
    """What a result measures, its precision aside."""
    return (
        result["implementation"],
        result["backend"],
        result["convolutions"],
        result.get("mode"),
    )


def _row(result: dict, float32_median: float | None) -> dict:
    median, best = result["median_s_per_it"], result["best_s_per_it"]
    peaks = result["peak_gflops_by_precision"]
    gflops = result["flops"]["iteration"] / median / 1e9
    plain = result["implementation"] == "plain"
    target = (
        TARGETS[result["backend"]]
        if result["architecture"] == "dcgan32" and not plain
        else None
    )
    return {
        "backend": result["backend"],
        "implementation": result["implementation"],
        "mode": result.get("mode", "jit" if result["jit_compile"] else "eager"),
        "convolutions": (
            f"auto ({result['resolved_convolutions']})"
            if result["convolutions"] == "auto"
            else result["convolutions"]
        ),
        "precision": result["precision"],
        "task_switch_s": result.get("task_switch_s"),
        "s/it": median,
        "best s/it": best,
        "it/s": 1 / median,
        "GFLOP/s": gflops,
        "x float32": float32_median / median if float32_median else None,
        "float32 peak GFLOP/s": peaks["float32"],
        "bfloat16 peak GFLOP/s": peaks["bfloat16"],
        "% of peak": 100 * gflops / peaks[result["precision"]],
        "target it/s": target,
        # A shared machine slows some timings down: say when only the best
        # timing reaches the target.
        "met?": "-"
        if target is None
        else "yes"
        if 1 / median >= target
        else ("best only" if 1 / best >= target else "no"),
    }


def peer_ratios(rows: list[dict]) -> list[dict]:
    """Per precision and peer mode: the package's s/it over the plain loop's.

    "fastest" is the package's fastest row of that precision (any backend),
    "torch" its fastest PyTorch-backend row; a ratio below 1 is faster than
    the peer.
    """
    ratios = []
    for peer in (r for r in rows if r["implementation"] == "plain"):
        ours = [
            r
            for r in rows
            if r["implementation"] != "plain" and r["precision"] == peer["precision"]
        ]
        if not ours:
            continue
        entry = {
            "precision": peer["precision"],
            "plain mode": peer["mode"],
            "plain s/it": peer["s/it"],
        }
        for name, candidates in (
            ("fastest", ours),
            ("torch", [r for r in ours if r["backend"] == "torch"]),
        ):
            if not candidates:
                continue
            best = min(candidates, key=lambda r: r["s/it"])
            ratio = best["s/it"] / peer["s/it"]
            entry[name] = {
                "backend": best["backend"],
                "s/it": best["s/it"],
                "ratio": ratio,
                "target": PEER_TARGETS[name],
                "met?": "yes" if ratio <= PEER_TARGETS[name] else "no",
            }
        ratios.append(entry)
    return ratios


def _ratio_cells(entry: dict, name: str) -> str:
    if name not in entry:
        return "- | - | -"
    side = entry[name]
    return (
        f"{side['backend']} {side['s/it']:.3f} | {side['ratio']:.2f} "
        f"(≤ {side['target']}) | {side['met?']}"
    )


def markdown(rows: list[dict], meta: dict) -> str:
    classes, channels, size, description = ARCHITECTURES[meta["architecture"]]
    lines = [
        "# Training throughput",
        "",
        f"{description} conditional WGAN-GP, batch {BATCH}, {classes} classes, "
        f"{size}x{size}x{channels}, one iteration = {N_CRITIC} critic + 1 generator "
        f"step (one `fit` step, {N_CRITIC * BATCH} images). "
        f"{meta['iters']} iterations per timing, median of {meta['repeats']} "
        "timings (best beside it): the machine is shared.",
        "",
        f"Machine: {meta['cpus']} CPU(s), {meta['machine']}; load average "
        f"{meta['load_before']} before, {meta['load_after']} after."
        + (f" XLA_FLAGS: `{meta['xla_flags']}`." if meta.get("xla_flags") else ""),
        f"FLOPs per iteration (analytic, useful work): "
        f"{meta['flops_per_iteration'] / 1e9:.1f} GFLOP; peaks = best "
        "2048x2048 `keras.ops.matmul` in float32 and in bfloat16, same backend "
        "and process; % of peak is against the row's own precision; x float32 "
        "is the speed over the same backend's float32 row.",
        "",
        "| implementation | backend | convolutions | precision | s/it | best s/it "
        "| it/s | x float32 | GFLOP/s | float32 peak | bfloat16 peak | % of peak "
        "| target it/s | met? |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        speedup = "-" if r["x float32"] is None else f"{r['x float32']:.2f}"
        implementation = r["implementation"]
        if implementation == "plain":
            implementation += f" ({PLAIN_LABELS[r['mode']]})"
        lines.append(
            f"| {implementation} | {r['backend']} | {r['convolutions']} "
            f"| {r['precision']} "
            f"| {r['s/it']:.3f} | {r['best s/it']:.3f} | {r['it/s']:.2f} "
            f"| {speedup} | {r['GFLOP/s']:.0f} | {r['float32 peak GFLOP/s']:.0f} "
            f"| {r['bfloat16 peak GFLOP/s']:.0f} | {r['% of peak']:.0f} "
            f"| {r['target it/s'] or '-'} | {r['met?']} |"
        )
    switching = [r for r in rows if r["task_switch_s"]]
    if switching:
        lines += [
            "",
            f"task_switch_s: from a task's start to its first iteration, less "
            f"one iteration, median over tasks 2-{SWITCH_TASKS} "
            f"({SWITCH_STEPS} iterations each; the step is compiled in task 1). "
            "EWC's includes its Fisher estimate, DGR's its solver snapshot.",
            "",
            "| backend | convolutions | precision | "
            + " | ".join(SWITCH_METHODS)
            + " |",
            "|---|---|---|" + "---:|" * len(SWITCH_METHODS),
        ]
        for r in switching:
            cells = " | ".join(f"{r['task_switch_s'][m]:.2f}" for m in SWITCH_METHODS)
            lines.append(
                f"| {r['backend']} | {r['convolutions']} | {r['precision']} | {cells} |"
            )
    ratios = peer_ratios(rows)
    if ratios:
        lines += [
            "",
            "The plain PyTorch loop (`benchmarks/plain_torch.py`) as the peer: "
            "the package's fastest backend and its PyTorch backend in the same "
            "precision, s/it and s/it over the peer's (below 1: faster).",
            "",
            "| precision | plain loop | plain s/it | fastest backend s/it "
            "| fastest / plain | met? | torch backend s/it | torch / plain | met? |",
            "|---|---|---:|---|---:|---|---|---:|---|",
        ]
        for entry in ratios:
            lines.append(
                f"| {entry['precision']} | {PLAIN_LABELS[entry['plain mode']]} "
                f"| {entry['plain s/it']:.3f} | {_ratio_cells(entry, 'fastest')} "
                f"| {_ratio_cells(entry, 'torch')} |"
            )
    return "\n".join(lines) + "\n"


def _measure(backend: str, worker_arg: str, precision: str, args) -> dict:
    """One case in a subprocess with `KERAS_BACKEND` set: the worker's result.

    `worker_arg` is a convolution implementation, or `plain-<mode>` for the
    plain PyTorch loop.
    """
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        f"--worker={worker_arg}",
        f"--worker-precision={precision}",
        f"--architecture={args.architecture}",
        f"--iters={args.iters}",
        f"--warmup={args.warmup}",
        f"--repeats={args.repeats}",
    ]
    env = dict(os.environ, KERAS_BACKEND=backend)
    return run_worker(command, env, f"{backend} / {worker_arg} / {precision}", ROOT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument(
        "--architecture", choices=sorted(ARCHITECTURES), default="dcgan32"
    )
    parser.add_argument(
        "--implementations",
        default="auto",
        help="comma-separated: auto, native, matmul, stock (default: auto)",
    )
    parser.add_argument(
        "--precisions",
        default=",".join(PRECISIONS),
        help="comma-separated: float32, bfloat16 (default: both)",
    )
    parser.add_argument(
        "--plain",
        default=",".join(PLAIN_MODES),
        help="plain PyTorch peer modes, comma-separated: eager, compile; "
        "'none' for no peer (default: both; dcgan32 only)",
    )
    parser.add_argument("--iters", type=int, default=8, help="iterations per timing")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations")
    parser.add_argument("--repeats", type=int, default=5, help="timings per case")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-precision", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # in the subprocess, KERAS_BACKEND already set
        timings = (args.worker_precision, args.iters, args.warmup, args.repeats)
        if args.worker.startswith("plain-"):
            result = plain_worker(args.worker.removeprefix("plain-"), *timings)
        else:
            result = worker(args.architecture, args.worker, *timings)
        print_result(result)
        return 0

    backends = [b for b in args.backends.split(",") if b]
    implementations = [i for i in args.implementations.split(",") if i]
    if args.architecture != "dcgan32":
        # Built from stock Keras layers only: one implementation to measure.
        implementations = ["native"]
    for name in backends:
        if name not in BACKENDS:
            parser.error(f"unknown backend {name!r}")
    for name in implementations:
        if name not in IMPLEMENTATIONS:
            parser.error(f"unknown implementation {name!r}")
    precisions = [p for p in args.precisions.split(",") if p]
    for name in precisions:
        if name not in PRECISIONS:
            parser.error(f"unknown precision {name!r}")
    plain_modes = [m for m in args.plain.split(",") if m and m != "none"]
    for name in plain_modes:
        if name not in PLAIN_MODES:
            parser.error(f"unknown plain mode {name!r}")
    if args.architecture != "dcgan32":
        plain_modes = []  # the peer is written for DCGAN-32 only
    load_before = round(os.getloadavg()[0], 2)
    results = []
    for backend in backends:
        done = set()
        for implementation in implementations:
            if implementation in done:
                continue
            for precision in precisions:
                result = _measure(backend, implementation, precision, args)
                results.append(result)
            # `auto` resolves to one of the others: do not measure it twice.
            done.update({implementation, result["resolved_convolutions"]})
    for mode in plain_modes:
        for precision in precisions:
            results.append(_measure("torch", f"plain-{mode}", precision, args))
    float32_medians = {
        _case(r): r["median_s_per_it"] for r in results if r["precision"] == "float32"
    }
    rows = [_row(r, float32_medians.get(_case(r))) for r in results]
    meta = {
        "architecture": args.architecture,
        "iters": args.iters,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "load_before": load_before,
        "load_after": round(os.getloadavg()[0], 2),
        # The workers inherit the environment: XLA's options change JAX's step.
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "flops_per_iteration": results[0]["flops"]["iteration"] if results else 0,
        "flop_count": "analytic (see benchmarks/train_throughput.py docstring)",
    }
    text = markdown(rows, meta)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "train_throughput" + (
        "" if args.architecture == "dcgan32" else f"_{args.architecture}"
    )
    report = {
        "meta": meta,
        "rows": rows,
        "peer_ratios": peer_ratios(rows),
        "results": results,
    }
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
