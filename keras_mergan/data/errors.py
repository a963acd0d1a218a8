"""The error of every dataset loader."""


class DatasetError(ValueError):
    """A dataset could not be loaded or a category could not be resolved.

    The message names the offending source, file or folder and says what was
    expected.
    """
