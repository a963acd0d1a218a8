"""Ctrl-C ends a fit even when a library drops the interrupt."""

import signal

import keras
import numpy as np
import pytest

from keras_mergan.run.interrupt import InterruptGuard


@pytest.fixture
def python_sigint_handler():
    # A suite started in the background inherits SIGINT ignored; the guard
    # works where Python's own handler is set, as in a terminal.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _press_and_swallow_ctrl_c():
    try:
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        pass


class DropsCtrlC(keras.callbacks.Callback):
    """Ctrl-C pressed after the first batch and swallowed, as NumPy swallows
    it inside the conversion of a JAX array."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(batch)
        if batch == 0:
            _press_and_swallow_ctrl_c()


class DropsCtrlCAtTheEnd(keras.callbacks.Callback):
    """Ctrl-C swallowed after the last batch, while a task's end is scored."""

    def on_epoch_end(self, epoch, logs=None):
        _press_and_swallow_ctrl_c()


def _fit(callbacks):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((8, 2), "float32"), np.zeros((8, 1), "float32")
    model.fit(x, y, batch_size=1, epochs=1, callbacks=callbacks, verbose=0)


def test_a_swallowed_ctrl_c_stops_the_fit_at_the_next_batch(python_sigint_handler):
    dropped = DropsCtrlC()
    _fit([dropped])
    assert dropped.batches == list(range(8))  # without the guard it runs on

    dropped = DropsCtrlC()
    with pytest.raises(KeyboardInterrupt):
        _fit([InterruptGuard(), dropped])
    assert dropped.batches == [0]
    # Python's handler is back, so the next fit's guard can take over.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_swallowed_after_the_last_batch_ends_the_fit_with_it(
    python_sigint_handler,
):
    _fit([DropsCtrlCAtTheEnd()])  # without the guard nobody hears it
    with pytest.raises(KeyboardInterrupt):
        _fit([InterruptGuard(), DropsCtrlCAtTheEnd()])


def test_the_guard_leaves_other_handlers_and_restores_pythons(python_sigint_handler):
    _fit([InterruptGuard()])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    dropped = DropsCtrlC()
    _fit([InterruptGuard(), dropped])
    assert dropped.batches == list(range(8))
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
