"""Ctrl-C stops `model.fit` even when a library swallows the interrupt."""

from __future__ import annotations

import signal
import threading

import keras


class InterruptGuard(keras.callbacks.Callback):
    """Raises `KeyboardInterrupt` at the next batch end after a Ctrl-C that
    never reached the training loop.

    Python raises `KeyboardInterrupt` wherever the main thread is when
    SIGINT arrives. At every batch end Keras converts the logs to NumPy, and
    when the signal lands inside NumPy's conversion of a JAX array, NumPy
    drops the exception: the run went on as if Ctrl-C had not been pressed.
    While fitting, this callback's handler raises as Python's does and also
    remembers the press, so a swallowed one is raised again a batch later,
    or when the fit ends if no batch is left.
    A handler set by the program (or SIGINT ignored) is left as it is, and
    so is any thread but the main one, where handlers cannot be set.

    Example:

    >>> # model.fit(stream, callbacks=[InterruptGuard(), TaskSequence(stream)])
    """

    def __init__(self) -> None:
        super().__init__()
        self.pressed = False

    def on_train_begin(self, logs=None) -> None:
        self.pressed = False
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            signal.signal(signal.SIGINT, self._interrupt)

    def _interrupt(self, signum, frame) -> None:
        # Once pressed, the guard only has to raise again: Python's handler
        # goes back at once, so a fit the interrupt ends (and that never
        # reaches `on_train_end`) leaves no handler of ours behind.
        self._restore_handler()
        self.pressed = True
        signal.default_int_handler(signum, frame)

    def _restore_handler(self) -> None:
        if signal.getsignal(signal.SIGINT) == self._interrupt:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def on_train_batch_end(self, batch, logs=None) -> None:
        if self.pressed:
            raise KeyboardInterrupt

    def on_train_end(self, logs=None) -> None:
        self._restore_handler()
        # Swallowed after the last batch (while the callbacks ending the
        # last task score and save it): the fit ends as usual, then stops.
        if self.pressed:
            raise KeyboardInterrupt
