"""Build a small run directory, as the training CLI writes it, for tests and benchmarks.

The run is trained for a few WGAN-GP steps on random images under the active
Keras backend, so its ``gan.keras`` files carry everything a real run's do
(optimizer state, replay generator, per-class statistics). The per-class
moving statistics are then perturbed so that every class normalises
differently: an export that ignored the label in batch norm would fail parity.

Run it in a process whose ``KERAS_BACKEND`` is the backend to "train" with::

    KERAS_BACKEND=jax python tests/synthetic_run.py RUN_DIR --tasks 3

Beside the usual files it writes ``RUN_DIR/task_XX/reference.npz``: latent
vectors, labels and the generator's images computed by the training backend
in float32 (whatever precision it trained in: exports compute in float32), at
batch 64 and one sample at a time, for parity tests, and the trained model's
own images at batch 64 (``trained_batch``; bfloat16 ones under
``--precision bfloat16``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from keras_mergan.run_folder import (
    METRICS_FILE,
    RUN_INFO,
    RunInfo,
    model_path,
    save_model,
    task_dir,
    write_json,
)

REFERENCE_BATCH = 64


def build_run(
    run_dir: str | Path,
    num_tasks: int = 2,
    num_classes: int = 10,
    channels: int = 1,
    latent_dim: int = 128,
    steps_per_task: int = 1,
    batch_size: int = 4,
    seed: int = 0,
    precision: str = "float32",
) -> Path:
    """Train a tiny run under the active backend and save it like the CLI.

    Example:

    >>> # KERAS_BACKEND=torch
    >>> # build_run("/tmp/run", num_tasks=2)
    """
    import keras
    from keras_mergan.export.fold import float32_generator

    from keras_mergan.backend.precision import precision_scope
    from keras_mergan.data.tasks import TaskSequence, TaskStream
    from keras_mergan.methods.conditional_wgan_gp import ConditionalWGANGP
    from keras_mergan.models import build_dcgan_critic, build_dcgan_generator

    keras.utils.set_random_seed(seed)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tasks = [[t % num_classes] for t in range(num_tasks)]
    class_names = [f"class_{c}" if c % 2 else str(c) for c in range(num_classes)]

    with precision_scope(precision):
        gan = ConditionalWGANGP(
            build_dcgan_generator(num_classes, channels, latent_dim),
            build_dcgan_critic(num_classes, channels),
            latent_dim=latent_dim,
            seed=seed,
        )
    gan.compile()
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (8 * num_classes, 32, 32, channels)).astype("float32")
    labels = np.arange(len(images)) % num_classes
    stream = TaskStream(
        images, labels, tasks, steps_per_task=steps_per_task, batch_size=batch_size
    )
    generator = gan.generator

    class SaveTask(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen = stream.seen_classes(epoch)
            _perturb_statistics(generator, rng)
            _boost_contrast(generator, latent_dim, seen)
            folder = task_dir(run_dir, epoch + 1)
            save_model(gan, model_path(run_dir, epoch + 1))
            _write_reference(
                generator,
                float32_generator(generator),
                folder,
                seen,
                latent_dim,
                seed + epoch,
            )
            metrics = {"task": epoch + 1, "task_classes": tasks[epoch]}
            write_json(folder / METRICS_FILE, {**metrics, "seen_classes": seen})

    gan.fit(
        stream,
        epochs=num_tasks,
        steps_per_epoch=steps_per_task,
        callbacks=[TaskSequence(stream), SaveTask()],
        verbose=0,
    )
    RunInfo(
        method="sft",
        dataset="synthetic",
        class_names=class_names,
        tasks=tasks,
        latent_dim=latent_dim,
        image_shape=[32, 32, channels],
        backend=keras.config.backend(),
        keras_version=keras.__version__,
        config={
            "iters_per_task": steps_per_task,
            "batch_size": batch_size,
            "seed": seed,
        },
        precision=precision,
    ).write(run_dir)
    return run_dir


def _perturb_statistics(generator, rng: np.random.Generator) -> None:
    from keras_mergan.layers import ConditionalBatchNormalization

    for layer in generator.layers:
        if isinstance(layer, ConditionalBatchNormalization):
            shape = tuple(layer.moving_mean.shape)
            layer.moving_mean.assign(rng.normal(0, 0.1, shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.3, 2.0, shape).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.1, shape).astype("float32"))


def _boost_contrast(generator, latent_dim: int, seen) -> None:
    """Rescale the last weighted layer so samples span much of [-1, 1].

    A barely trained generator outputs near-constant grey; visible
    structure makes screenshots and grids meaningful to check.
    """
    import keras

    z = np.random.default_rng(123).standard_normal((32, latent_dim)).astype("float32")
    labels = np.asarray(seen, "int32")[np.arange(32) % len(seen)]
    spread = float(np.std(keras.ops.convert_to_numpy(generator([z, labels]))))
    last = [layer for layer in generator.layers if layer.weights][-1]
    kernel = last.weights[0]
    factor = min(50.0, 0.6 / max(spread, 1e-6))
    kernel.assign(keras.ops.convert_to_numpy(kernel) * factor)


def _write_reference(
    trained, reference, folder: Path, seen, latent_dim: int, seed: int
):
    """Images of `reference` (float32, `trained`'s weights) and of `trained`."""
    import keras

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((REFERENCE_BATCH, latent_dim)).astype("float32")
    labels = np.asarray(seen, "int32")[np.arange(REFERENCE_BATCH) % len(seen)]

    def images(model, z, labels):
        return keras.ops.convert_to_numpy(model([z, labels], training=False))

    single = np.concatenate(
        [images(reference, z[i : i + 1], labels[i : i + 1]) for i in range(8)]
    )
    np.savez(
        folder / "reference.npz",
        z=z,
        labels=labels,
        batch=images(reference, z, labels),
        single=single,
        trained_batch=images(trained, z, labels),
    )


def source_fingerprint() -> str:
    """Hash of the code a synthetic run depends on, to key cached runs."""
    import hashlib
    import importlib.metadata

    import keras_mergan

    digest = hashlib.sha256()
    roots = [Path(keras_mergan.__file__).parent, Path(__file__)]
    for root in roots:
        paths = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for path in paths:
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    for package in ("keras", "numpy"):
        digest.update(importlib.metadata.version(package).encode())
    return digest.hexdigest()[:16]


def cached_run(
    cache_root: str | Path,
    backend: str,
    num_tasks: int = 2,
    channels: int = 1,
    steps: int = 1,
    timeout: float = 900,
    precision: str = "float32",
) -> Path:
    """A synthetic run trained under ``backend``, built once per code version.

    Training happens in a subprocess with ``KERAS_BACKEND=backend``, so the
    caller may use any backend (or none). The run is built in a temporary
    directory and renamed into ``cache_root`` when complete.

    Example:

    >>> # run_dir = cached_run(tmp_path, "jax")
    """
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    cache_root = Path(cache_root)
    key = (
        f"{backend}-{precision}-t{num_tasks}-c{channels}-s{steps}-"
        f"{source_fingerprint()}"
    )
    target = cache_root / key
    if (target / RUN_INFO).is_file():
        return target
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache_root))
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        str(staging / "run"),
    ]
    command += ["--tasks", str(num_tasks), "--channels", str(channels)]
    command += ["--steps", str(steps), "--precision", precision]
    try:
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"building a {backend} run failed:\n{result.stderr[-4000:]}"
            )
        try:
            os.rename(staging / "run", target)
        except OSError:  # another process finished the same run first
            if not (target / RUN_INFO).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="float32")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    build_run(
        args.run_dir,
        num_tasks=args.tasks,
        num_classes=args.classes,
        channels=args.channels,
        steps_per_task=args.steps,
        seed=args.seed,
        precision=args.precision,
    )
    print(f"built {args.run_dir} in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
