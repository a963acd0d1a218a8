"""Per-task values of a method's step, held in variables the step reads.

A compiled train step captures Python values as constants: a step that read
the number of old categories from a Python list would be traced and compiled
again at every task. Values that change from task to task live here instead,
set by `begin_task`, so one compiled step serves every task of a run (and of
its extensions).

They are not part of a checkpoint: `begin_task` sets them from the task
sequence before every task, a resumed one included, and checkpoints keep the
layout of models without them.
"""

import keras


@keras.saving.register_keras_serializable(package="keras_mergan")
class TaskState(keras.layers.Layer):
    """Named non-trainable variables that `begin_task` sets for each task.

    Example:

    >>> state = TaskState(name="task_state")
    >>> count = state.add("old_class_count")
    >>> count.assign(3.0)
    >>> float(keras.ops.convert_to_numpy(state.value("old_class_count")))
    3.0
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._by_name: dict[str, keras.Variable] = {}
        self.built = True

    def add(self, name: str, shape: tuple = (), dtype: str = "float32"):
        """A new zero-initialised variable called `name`."""
        # autocast=False: read in its own dtype under a mixed-precision policy.
        variable = self.add_weight(
            shape=shape,
            dtype=dtype,
            initializer="zeros",
            trainable=False,
            autocast=False,
            name=name,
        )
        self._by_name[name] = variable
        return variable

    def value(self, name: str):
        """The current value of the variable called `name`."""
        return self._by_name[name].value

    def set(self, **values) -> None:
        """Assigns each named variable its value."""
        for name, value in values.items():
            variable = self._by_name[name]
            variable.assign(keras.ops.cast(value, variable.dtype))

    def save_own_variables(self, store):
        # Set by begin_task before every task: nothing to keep.
        pass

    def load_own_variables(self, store):
        pass
