"""Split MNIST with Deep Generative Replay: a classifier learning 5 tasks.

Usage::

    python benchmarks/split_mnist.py --preset quick            # minutes on CPU
    python benchmarks/split_mnist.py --preset full --backend jax

Task t holds digits 2t and 2t+1 (0/1, 2/3, ..., 8/9); only the current
task's training images are available. After every task, the solver's
accuracy on the real test images of every seen class is measured (the mean
over seen test images is the headline number; the paper's Fig. 6 and
MeRGAN's DGR row). Three ways to train the same solver (DGR paper, section
4):

- ``none``: the solver fine-tuned on the current task alone;
- ``exact``: exact replay (ER, the upper bound of generative replay): real
  images of earlier tasks, labelled by the previous solver, mixed with the
  current task's, a fraction r = 1 / (tasks seen) real current data;
- ``gr``: generative replay, ``keras_mergan.methods.DeepGenerativeReplay``:
  the replays come from the previous task's WGAN-GP generator.

Every method takes the same number of solver updates per task (one per GAN
iteration, on the ``n_critic * batch_size`` images of the iteration), with a
fresh Adam (lr 1e-3) per task. Results go to
``benchmarks/results/split_mnist.{json,md,png}`` (``_<preset>`` suffixed
unless it is the quick preset): average accuracy after each task, accuracy
of each task's classes after each task (the plot), and time.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SHARED_MNIST = HERE.parent.parent / "shared" / "datasets" / "mnist.npz"
TASKS = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
METHODS = ("none", "exact", "gr")

# GAN iterations (= solver updates) per task and network widths.
PRESETS = {
    "quick": {"iters_per_task": 300, "width": 16, "solver_width": 16},
    "full": {"iters_per_task": 4000, "width": 32, "solver_width": 32},
}
# Targets: DGR paper Fig. 6 (GR close to the upper bound, none forgets all
# but the last task); MeRGAN Table 1's DGR row is about generated images.
TARGETS = {"gr": ">= 90", "exact": "~ 99 (upper bound)", "none": "~ 20"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument("--iters-per-task", type=int)
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--dataset",
        default=str(SHARED_MNIST) if SHARED_MNIST.exists() else "mnist",
        help="MNIST .npz (default: the shared copy if present, else download)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n-critic", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    unknown = set(args.methods.split(",")) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; known: {list(METHODS)}")
    return args


def settings(args) -> dict:
    preset = dict(PRESETS[args.preset])
    if args.iters_per_task:
        preset["iters_per_task"] = args.iters_per_task
    preset.update(batch_size=args.batch_size, n_critic=args.n_critic)
    return preset


def task_accuracies(classify, dataset) -> list[float]:
    """Accuracy on each task's test images (NaN-free: every task has images)."""
    import numpy as np

    predicted = classify(dataset.x_test)
    return [
        float(np.mean(predicted[mask] == dataset.y_test[mask]))
        for mask in (np.isin(dataset.y_test, task) for task in TASKS)
    ]


def seen_accuracy(classify, dataset, seen) -> float:
    import numpy as np

    mask = np.isin(dataset.y_test, seen)
    return float(np.mean(classify(dataset.x_test[mask]) == dataset.y_test[mask]))


def train_generative_replay(dataset, config, seed, record):
    import keras
    import numpy as np

    from keras_mergan.methods import DeepGenerativeReplay
    from keras_mergan.models import build_dcgan_critic, build_dcgan_generator
    from keras_mergan.sampling import fixed_latents
    from keras_mergan.tasks import TaskSequence, TaskStream

    keras.utils.set_random_seed(seed)
    num_classes, channels = dataset.num_classes, dataset.channels
    scholar = DeepGenerativeReplay(
        build_dcgan_generator(num_classes, channels, width=config["width"]),
        build_dcgan_critic(num_classes, channels, width=config["width"]),
        n_critic=config["n_critic"],
        solver_width=config["solver_width"],
        seed=seed,
    )
    scholar.compile()
    stream = TaskStream(
        dataset.x_train,
        dataset.y_train,
        TASKS,
        config["iters_per_task"],
        config["batch_size"],
        config["n_critic"],
        seed=seed,
    )
    z = fixed_latents(16, scholar.latent_dim, seed)
    samples = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            record(epoch, scholar.classify)
            samples.append(scholar.generate_unconditional(z))

    scholar.fit(
        stream,
        epochs=len(TASKS),
        steps_per_epoch=config["iters_per_task"],
        callbacks=[TaskSequence(stream), Record()],
        verbose=2,
    )
    return np.stack(samples)


def train_solver_alone(dataset, config, seed, record, exact_replay):
    """`none` (no replay) or `exact` (earlier tasks' real images replayed)."""
    import keras
    import numpy as np

    from keras_mergan.models.solver import build_solver

    keras.utils.set_random_seed(seed)
    solver = build_solver(
        dataset.image_shape, dataset.num_classes, config["solver_width"]
    )
    batch = config["batch_size"] * config["n_critic"]

    def classify(images):
        logits = solver.predict(images, batch_size=512, verbose=0)
        return np.argmax(logits, axis=-1)

    rng = np.random.default_rng(seed)
    for t, task in enumerate(TASKS):
        current = np.flatnonzero(np.isin(dataset.y_train, task))
        past = np.flatnonzero(np.isin(dataset.y_train, sum(TASKS[:t], [])))
        replayed = 0 if not exact_replay or t == 0 else batch - round(batch / (t + 1))
        if replayed:
            # The previous solver's answers, as generative replay would get.
            past_labels = classify(dataset.x_train[past])
        indices, labels = [], []
        for _ in range(config["iters_per_task"]):
            real = rng.choice(current, batch - replayed)
            indices.append(real)
            labels.append(dataset.y_train[real])
            if replayed:
                chosen = rng.integers(0, len(past), replayed)
                indices[-1] = np.concatenate([real, past[chosen]])
                labels[-1] = np.concatenate([labels[-1], past_labels[chosen]])
        solver.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        solver.fit(
            _batches_class()(dataset.x_train, indices, labels), epochs=1, verbose=0
        )
        record(t, classify)


def _batches_class():
    import keras

    class Batches(keras.utils.PyDataset):
        """Batch i: the images `indices[i]` with `labels[i]`."""

        def __init__(self, images, indices, labels):
            super().__init__()
            self.images, self.indices, self.labels = images, indices, labels

        def __len__(self):
            return len(self.indices)

        def __getitem__(self, i):
            return self.images[self.indices[i]], self.labels[i]

    return Batches


def run_method(name, dataset, config, seed) -> dict:
    result = {"task_accuracy": [], "average_accuracy": []}

    def record(t, classify):
        seen = sum(TASKS[: t + 1], [])
        result["task_accuracy"].append(task_accuracies(classify, dataset))
        result["average_accuracy"].append(seen_accuracy(classify, dataset, seen))
        print(
            f"[{name}] after task {t + 1}: accuracy on seen classes "
            f"{100 * result['average_accuracy'][-1]:.2f}%, per task "
            + " ".join(f"{100 * a:.1f}" for a in result["task_accuracy"][-1]),
            flush=True,
        )

    started = time.time()
    samples = None
    if name == "gr":
        samples = train_generative_replay(dataset, config, seed, record)
    else:
        train_solver_alone(dataset, config, seed, record, name == "exact")
    result["seconds"] = round(time.time() - started, 1)
    return result, samples


def plot(results: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(results), figsize=(4 * len(results), 3.4), sharey=True, squeeze=False
    )
    after = range(1, len(TASKS) + 1)
    for ax, (name, result) in zip(axes[0], results.items(), strict=True):
        accuracy = list(zip(*result["task_accuracy"], strict=True))
        for t, task in enumerate(TASKS):
            ax.plot(
                list(after)[t:],
                [100 * a for a in accuracy[t][t:]],
                marker="o",
                label=f"task {t + 1} ({task[0]}/{task[1]})",
            )
        ax.plot(
            after,
            [100 * a for a in result["average_accuracy"]],
            "k--",
            linewidth=2,
            label="seen classes",
        )
        ax.set_title(name)
        ax.set_xlabel("tasks trained")
        ax.set_xticks(list(after))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(report: dict) -> str:
    config = report["config"]
    lines = [
        f"# Split MNIST, 5 tasks of 2 digits ({report['preset']}: "
        f"{config['iters_per_task']} iterations per task, backend "
        f"{report['backend']})",
        "",
        "Solver test accuracy (%) on every class seen so far, after each task. "
        f"GAN width {config['width']}, solver width {config['solver_width']}, "
        f"batch {config['batch_size']} x {config['n_critic']} critic updates.",
        "",
        "| method | "
        + " | ".join(f"task {t + 1}" for t in range(len(TASKS)))
        + " | target after 5 | time (s) |",
        "|---|" + "---:|" * (len(TASKS) + 2),
    ]
    for name, result in report["methods"].items():
        cells = " | ".join(f"{100 * a:.2f}" for a in result["average_accuracy"])
        lines.append(
            f"| {name} | {cells} | {TARGETS[name]} | {result['seconds']:.0f} |"
        )
    lines += [
        "",
        "Accuracy (%) of each task's classes after the last task:",
        "",
        "| method | " + " | ".join(f"{a}/{b}" for a, b in TASKS) + " |",
        "|---|" + "---:|" * len(TASKS),
    ]
    for name, result in report["methods"].items():
        final = result["task_accuracy"][-1]
        lines.append(
            f"| {name} | " + " | ".join(f"{100 * a:.1f}" for a in final) + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ["KERAS_BACKEND"] = args.backend
    import keras
    import numpy as np

    from keras_mergan.data import load_dataset
    from keras_mergan.sampling import grid_image, to_uint8

    dataset = load_dataset(args.dataset)
    config = settings(args)
    results, samples = {}, None
    for name in args.methods.split(","):
        results[name], method_samples = run_method(name, dataset, config, args.seed)
        samples = samples if method_samples is None else method_samples
    report = {
        "preset": args.preset,
        "backend": keras.config.backend(),
        "keras_version": keras.__version__,
        "dataset": str(args.dataset),
        "tasks": TASKS,
        "config": config,
        "seed": args.seed,
        "methods": results,
    }
    stem = "split_mnist" if args.preset == "quick" else f"split_mnist_{args.preset}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"{stem}.md").write_text(markdown(report))
    plot(
        results,
        args.out / f"{stem}.png",
        f"Split MNIST, {config['iters_per_task']} iterations per task",
    )
    if samples is not None:
        # Rows: generator after task 1..5; the same z in every row.
        grid_image(to_uint8(np.asarray(samples))).save(
            args.out / f"{stem}_gr_samples.png"
        )
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
