"""The TensorFlow side of an export: run as a subprocess only.

``python -m keras_mergan.export._worker``, started by :mod:`.core`.

A ``.keras`` file is backend neutral, so whichever backend trained the run,
this process loads it under ``KERAS_BACKEND=tensorflow`` and writes the
SavedModel (Keras ``ExportArchive``) and the ONNX model (tf2onnx) of the
folded inference generator. It reads a JSON job from stdin::

    {"jobs": [{"task": 3, "source": ".../task_03/gan.keras", "out": ".../.tmp"}],
     "verify": true, "opset": 17}

and prints one line per task on stdout, ``EXPORT-RESULT {"task": 3, "ok": true,
...}`` or ``EXPORT-RESULT {"task": 3, "ok": false, "error": "..."}``, as each
task finishes, so the parent can publish finished tasks while later ones are
still running.
All other output (TensorFlow's logging) goes to stderr.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys
import time
import traceback

# Imports no ML framework: KERAS_BACKEND is set below, before Keras is.
from .protocol import PROTOCOL_PREFIX

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ONNX_FILE = "model.onnx"
SAVED_MODEL_DIR = "saved_model"
VERIFY_BATCH = 16
TOLERANCE = 1e-4


def _import_registered_classes() -> None:
    """Import every keras_mergan module that registers serializable classes.

    ``load_model`` resolves custom classes by registered name, so layers and
    methods must be imported first. ``keras_mergan.backend`` is skipped: its
    submodules import JAX and torch.
    """
    import keras_mergan

    for package in ("layers", "models", "methods"):
        try:
            module = importlib.import_module(f"keras_mergan.{package}")
        except ModuleNotFoundError:
            continue
        for info in pkgutil.walk_packages(module.__path__, f"{module.__name__}."):
            try:
                importlib.import_module(info.name)
            except Exception as error:  # a half-written module must not block export
                print(f"export: skipped {info.name}: {error!r}", file=sys.stderr)
    del keras_mergan


def _generator_of(model):
    # A run saves the whole GAN; a bare generator is accepted too.
    return getattr(model, "generator", model)


def export_one(job: dict, opset: int, verify: bool) -> dict:
    """Export one task's generator into ``job["out"]``; return manifest facts."""
    import keras
    import tensorflow as tf
    import tf2onnx

    from .fold import fold_generator

    started = time.perf_counter()
    # compile=False: the compile config names backend-specific optimizer
    # classes (a torch-trained run would import torch here) and export
    # needs no optimizer.
    gan = keras.saving.load_model(job["source"], compile=False)
    generator = _generator_of(gan)
    if len(generator.inputs) != 2 or len(generator.outputs) != 1:
        raise ValueError(
            "only conditional generators (z, label) -> image can be exported; "
            f"{generator.name} has {len(generator.inputs)} inputs and "
            f"{len(generator.outputs)} outputs"
        )
    latent_dim = int(generator.inputs[0].shape[-1])
    label_dtype = tf.as_dtype(generator.inputs[1].dtype)
    image_shape = [int(d) for d in generator.outputs[0].shape[1:]]
    inference, folded = fold_generator(generator)

    signature = [
        tf.TensorSpec([None, latent_dim], tf.float32, name="z"),
        tf.TensorSpec([None], label_dtype, name="label"),
    ]

    def serve(z, label):
        return {"image": inference([z, label], training=False)}

    out = job["out"]
    archive = keras.export.ExportArchive()
    archive.track(inference)
    archive.add_endpoint("serve", serve, input_signature=signature)
    archive.write_out(os.path.join(out, SAVED_MODEL_DIR), verbose=False)
    _patch_tf2onnx()
    tf2onnx.convert.from_function(
        tf.function(serve, input_signature=signature),
        input_signature=signature,
        opset=opset,
        output_path=os.path.join(out, ONNX_FILE),
    )
    info = {
        "latent_dim": latent_dim,
        "image_shape": image_shape,
        "label_dtype": label_dtype.name,
        "folded_layers": folded,
        "opset": opset,
        "generator_layers": sorted(
            {type(layer).__name__ for layer in generator.layers}
        ),
    }
    if verify:
        info["verification"] = _verify(generator, out, latent_dim, label_dtype, job)
    info["seconds"] = round(time.perf_counter() - started, 3)
    return info


def _verify(generator, out, latent_dim, label_dtype, job) -> dict:
    """Compare both exported models with the unfolded Keras generator.

    A generator trained in mixed precision is compared in float32 (its
    float32 weights), as exports compute: its bfloat16 outputs differ from
    them by bfloat16's rounding, not by an export error.
    """
    import numpy as np
    import onnxruntime as ort
    import tensorflow as tf

    from .fold import float32_generator

    rng = np.random.default_rng(0)
    num_classes = job.get("num_classes")
    classes = job.get("seen_classes") or list(range(num_classes or 1))
    z = rng.standard_normal((VERIFY_BATCH, latent_dim)).astype("float32")
    labels = np.asarray(classes, label_dtype.as_numpy_dtype)[
        np.arange(VERIFY_BATCH) % len(classes)
    ]
    expected = np.asarray(float32_generator(generator)([z, labels], training=False))
    session = ort.InferenceSession(
        os.path.join(out, ONNX_FILE), providers=["CPUExecutionProvider"]
    )
    onnx_batch = session.run(["image"], {"z": z, "label": labels})[0]
    onnx_single = session.run(["image"], {"z": z[:1], "label": labels[:1]})[0]
    reloaded = tf.saved_model.load(os.path.join(out, SAVED_MODEL_DIR))
    saved = reloaded.signatures["serving_default"](
        z=tf.constant(z), label=tf.constant(labels)
    )["image"].numpy()
    report = {
        "batch": VERIFY_BATCH,
        "onnx_max_abs_diff": float(np.abs(onnx_batch - expected).max()),
        "onnx_batch1_max_abs_diff": float(np.abs(onnx_single - expected[:1]).max()),
        "saved_model_max_abs_diff": float(np.abs(saved - expected).max()),
    }
    worst = max(v for k, v in report.items() if k.endswith("diff"))
    if not worst <= TOLERANCE:  # also catches NaN
        raise RuntimeError(
            f"exported model differs from Keras by {worst:.3g} > {TOLERANCE}: {report}"
        )
    return report


def _patch_tf2onnx() -> None:
    # tf2onnx 1.17 still uses numpy<2 names; Keras ships the patch it uses
    # for its own ONNX export. Private API, so tolerate its absence.
    try:
        from keras.src.export.tf2onnx_lib import patch_tf2onnx
    except ImportError:
        return
    patch_tf2onnx()


def _versions() -> dict:
    import importlib.metadata as metadata

    versions = {}
    for name in ("keras", "tensorflow", "tf2onnx", "onnx", "onnxruntime"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            try:
                versions[name] = metadata.version(f"{name}-cpu")
            except metadata.PackageNotFoundError:
                versions[name] = None
    return versions


def main() -> int:
    request = json.load(sys.stdin)
    # Keep the real stdout for our messages and point fd 1 at stderr, so
    # nothing a library prints (from Python or from C++) can corrupt them.
    stdout = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _import_registered_classes()
    versions = _versions()
    failures = 0
    for job in request["jobs"]:
        try:
            info = export_one(
                job, int(request.get("opset", 17)), request.get("verify", True)
            )
            message = {
                "task": job["task"],
                "ok": True,
                "info": info,
                "versions": versions,
            }
        except Exception as error:  # reported to the parent, which raises
            failures += 1
            traceback.print_exc(file=sys.stderr)
            message = {
                "task": job["task"],
                "ok": False,
                "error": f"{type(error).__name__}: {error}",
            }
        stdout.write(PROTOCOL_PREFIX + json.dumps(message) + "\n")
        stdout.flush()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
