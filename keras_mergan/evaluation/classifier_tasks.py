"""Split and permuted MNIST: a classifier learning tasks, with or without replay.

The protocols of the DGR paper (sections 4.1 and 4.3), for a solver rather
than a generator:

- ``split``: task t holds digits 2t and 2t+1 (0/1, 2/3, ..., 8/9);
- ``permuted``: task t holds all ten digits, their pixels shuffled by a
  fixed permutation of its own (task 1 unpermuted).

`run_method` trains one solver over a `Protocol`'s tasks in one of three
ways (`METHODS`) and records, after every task, its accuracy on the real
test images of every task:

- ``none``: the solver fine-tuned on the current task alone;
- ``exact``: exact replay (the upper bound of generative replay): real
  images of earlier tasks, labelled by the previous solver, mixed with the
  current task's, a fraction r = 1 / (tasks seen) real current data;
- ``gr``: generative replay, `keras_mergan.methods.DeepGenerativeReplay`.

Every method takes the same number of solver updates per task (one per GAN
iteration, on the ``n_critic * batch_size`` images of the iteration).
``benchmarks/split_mnist.py`` runs them and reports.

Example:
    >>> protocol = Protocol.create("permuted", 3, 32 * 32, seed=0)
    >>> protocol.task_names()
    ['perm 1', 'perm 2', 'perm 3']
"""

import logging
import time

import keras
import numpy as np

from keras_mergan.data.tasks import TaskSequence, TaskStream
from keras_mergan.evaluation.unconditional import class_distribution
from keras_mergan.inference import predict
from keras_mergan.methods import DeepGenerativeReplay
from keras_mergan.models import build_dcgan_critic, build_dcgan_generator
from keras_mergan.models.solver import build_solver
from keras_mergan.sampling import fixed_latents

__all__ = ["METHODS", "SPLIT_TASKS", "Protocol", "ProtocolTaskStream", "run_method"]

logger = logging.getLogger(__name__)

SPLIT_TASKS = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
METHODS = ("none", "exact", "gr")


class Protocol:
    """The tasks of a benchmark: each task's classes and how its images look.

    Args:
        name: ``"split"`` or ``"permuted"``.
        tasks: the classes of each task.
        permutations: per task, a permutation of the flattened pixels, or
            None for unpermuted tasks.
    """

    def __init__(self, name: str, tasks: list[list[int]], permutations=None):
        self.name = name
        self.tasks = tasks
        self.permutations = permutations

    @classmethod
    def create(cls, name: str, num_tasks: int, num_pixels: int, seed: int):
        """Split MNIST's 5 tasks, or `num_tasks` permuted ones.

        The permutations of `num_pixels` pixels are drawn from `seed`; the
        first task's is the identity.
        """
        if name == "split":
            return cls(name, SPLIT_TASKS)
        rng = np.random.default_rng(seed)
        permutations = [np.arange(num_pixels)] + [
            rng.permutation(num_pixels) for _ in range(num_tasks - 1)
        ]
        return cls(name, [list(range(10)) for _ in range(num_tasks)], permutations)

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def task_names(self) -> list[str]:
        if self.permutations is None:
            return ["/".join(map(str, task)) for task in self.tasks]
        return [f"perm {t + 1}" for t in range(self.num_tasks)]

    def transform(self, task: int, images):
        """Images as task `task` shows them."""
        if self.permutations is None:
            return images
        flat = images.reshape(len(images), -1)[:, self.permutations[task]]
        return flat.reshape(images.shape)

    def test_set(self, task: int, dataset):
        mask = np.isin(dataset.y_test, self.tasks[task])
        return self.transform(task, dataset.x_test[mask]), dataset.y_test[mask]


class ProtocolTaskStream(TaskStream):
    """A `TaskStream` whose images are transformed as their task shows them."""

    def __init__(self, protocol: Protocol, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.protocol = protocol

    def __getitem__(self, index):
        images, labels = super().__getitem__(index)
        return self.protocol.transform(self.task_of_step(int(index)), images), labels


def _gan_adam(config: dict, name: str):
    return keras.optimizers.Adam(
        config["gan_learning_rate"], beta_1=config["gan_beta_1"], beta_2=0.9, name=name
    )


def train_generative_replay(dataset, protocol, config, seed, record, evaluator):
    """DGR's scholar over the protocol's tasks; its samples after each task."""
    keras.utils.set_random_seed(seed)
    num_classes, channels = dataset.num_classes, dataset.channels
    scholar = DeepGenerativeReplay(
        build_dcgan_generator(num_classes, channels, width=config["width"]),
        build_dcgan_critic(num_classes, channels, width=config["width"]),
        n_critic=config["n_critic"],
        solver_width=config["solver_width"],
        solver_learning_rate=config["solver_learning_rate"],
        seed=seed,
    )
    scholar.compile(
        _gan_adam(config, "generator_adam"), _gan_adam(config, "critic_adam")
    )
    stream = ProtocolTaskStream(
        protocol,
        dataset.x_train,
        dataset.y_train,
        protocol.tasks,
        config["iters_per_task"],
        config["batch_size"],
        config["n_critic"],
        seed=seed,
    )
    grid_z = fixed_latents(16, scholar.latent_dim, seed)
    judged_z = fixed_latents(1000, scholar.latent_dim, seed + 1)
    samples, generated_classes = [], []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            record(epoch, scholar.classify)
            samples.append(scholar.generate_unconditional(grid_z))
            if evaluator is not None:
                seen = stream.seen_classes(epoch)
                images = scholar.generate_unconditional(judged_z)
                fractions = class_distribution(evaluator, images, seen)
                generated_classes.append(list(fractions["generated_classes"].values()))
                logger.info(
                    "[gr] generated classes "
                    + " ".join(
                        f"{c}:{100 * f:.0f}%"
                        for c, f in enumerate(generated_classes[-1])
                    )
                )

    scholar.fit(
        stream,
        epochs=protocol.num_tasks,
        steps_per_epoch=config["iters_per_task"],
        callbacks=[TaskSequence(stream), Record()],
        verbose=2,
    )
    return np.stack(samples), generated_classes


def train_solver_alone(dataset, protocol, config, seed, record, exact_replay):
    """`none` (no replay) or `exact` (earlier tasks' real images replayed)."""
    keras.utils.set_random_seed(seed)
    solver = build_solver(
        dataset.image_shape, dataset.num_classes, config["solver_width"]
    )
    batch = config["batch_size"] * config["n_critic"]

    def classify(images):
        logits = predict(solver, images, batch_size=512)
        return np.argmax(logits, axis=-1)

    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero(np.isin(dataset.y_train, task)) for task in protocol.tasks]
    for t in range(protocol.num_tasks):
        replayed = 0 if not exact_replay or t == 0 else batch - round(batch / (t + 1))
        if replayed:
            # Earlier tasks' images as they looked, labelled by the previous
            # solver, as generative replay would label its samples.
            past_images = np.concatenate(
                [protocol.transform(s, dataset.x_train[pools[s]]) for s in range(t)]
            )
            past_labels = classify(past_images)
        current = protocol.transform(t, dataset.x_train[pools[t]])
        current_labels = dataset.y_train[pools[t]]
        images, labels = [], []
        for _ in range(config["iters_per_task"]):
            real = rng.integers(0, len(current), batch - replayed)
            images.append(current[real])
            labels.append(current_labels[real])
            if replayed:
                chosen = rng.integers(0, len(past_images), replayed)
                images[-1] = np.concatenate([images[-1], past_images[chosen]])
                labels[-1] = np.concatenate([labels[-1], past_labels[chosen]])
        solver.compile(
            optimizer=keras.optimizers.Adam(config["solver_learning_rate"]),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        solver.fit(_Batches(images, labels), epochs=1, verbose=0)
        record(t, classify)


class _Batches(keras.utils.PyDataset):
    """Batch i: `images[i]` with `labels[i]`."""

    def __init__(self, images, labels):
        super().__init__()
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


def run_method(name, dataset, protocol, config, seed, evaluator):
    result = {"task_accuracy": [], "average_accuracy": []}
    test_sets = [protocol.test_set(t, dataset) for t in range(protocol.num_tasks)]

    def record(t, classify):
        correct = [classify(x) == y for x, y in test_sets]
        result["task_accuracy"].append([float(np.mean(c)) for c in correct])
        result["average_accuracy"].append(
            float(np.mean(np.concatenate(correct[: t + 1])))
        )
        logger.info(
            f"[{name}] after task {t + 1}: accuracy on seen tasks "
            f"{100 * result['average_accuracy'][-1]:.2f}%, per task "
            + " ".join(f"{100 * a:.1f}" for a in result["task_accuracy"][-1])
        )

    started = time.time()
    samples = None
    if name == "gr":
        samples, generated_classes = train_generative_replay(
            dataset, protocol, config, seed, record, evaluator
        )
        if generated_classes:
            result["generated_classes"] = generated_classes
    else:
        train_solver_alone(dataset, protocol, config, seed, record, name == "exact")
    result["seconds"] = round(time.time() - started, 1)
    return result, samples
