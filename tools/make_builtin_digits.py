"""Build the embedded default dataset ``keras_mergan/datasets/digits.npz``.

The built-in "digits" dataset is a class-balanced subset of MNIST (Yann LeCun,
Corinna Cortes, Christopher J.C. Burges; licence CC BY-SA 3.0), small enough to
ship inside the package so that examples and tests run offline.

Usage::

    python tools/make_builtin_digits.py /path/to/mnist.npz \
        [--out keras_mergan/datasets/digits.npz] [--train-per-class 600] \
        [--test-per-class 100] [--seed 0]

``mnist.npz`` is the file ``keras.datasets.mnist.load_data()`` caches (keys
``x_train``, ``y_train``, ``x_test``, ``y_test``; images uint8 [N, 28, 28]).
The output has the same keys and layout, plus ``class_names``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "keras_mergan/datasets/digits.npz"


def balanced_subset(
    x: np.ndarray, y: np.ndarray, per_class: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` random images of every class, sorted by original index."""
    picked = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < per_class:
            raise SystemExit(f"class {c} has only {len(idx)} images, need {per_class}")
        picked.append(rng.choice(idx, size=per_class, replace=False))
    order = np.sort(np.concatenate(picked))
    return x[order].astype(np.uint8), y[order].astype(np.uint8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="MNIST .npz in the keras layout")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--train-per-class", type=int, default=600)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    with np.load(args.source) as data:
        x_train, y_train = balanced_subset(
            data["x_train"], data["y_train"], args.train_per_class, rng
        )
        x_test, y_test = balanced_subset(
            data["x_test"], data["y_test"], args.test_per_class, rng
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=np.array([str(i) for i in range(10)]),
    )
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): "
        f"train {x_train.shape}, test {x_test.shape}"
    )


if __name__ == "__main__":
    main()
