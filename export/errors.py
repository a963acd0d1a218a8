"""The error every export step raises."""


class ExportError(RuntimeError):
    """An export could not be written; earlier exports are left untouched.

    Example:

    >>> from keras_mergan.export import export_run
    >>> try:
    ...     export_run("/nonexistent")
    ... except ExportError as error:
    ...     print("run.json not found" in str(error))
    True
    """
