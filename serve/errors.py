"""Errors of the serving API, each with the HTTP status the server answers with."""

from __future__ import annotations


class ServeError(ValueError):
    """Base class: a request the exports cannot answer.

    ``status`` is the HTTP status, ``code`` a stable machine-readable name
    and ``parameter`` the offending request parameter, if any.

    Example:

    >>> UnknownTaskError("no export for task 9", "task").to_json()["error"]["code"]
    'unknown_task'
    """

    status = 400
    code = "bad_request"

    def __init__(self, message: str, parameter: str | None = None):
        super().__init__(message)
        self.message = message
        self.parameter = parameter

    def to_json(self) -> dict:
        error = {"status": self.status, "code": self.code, "message": self.message}
        if self.parameter is not None:
            error["parameter"] = self.parameter
        return {"error": error}


class InvalidParameterError(ServeError):
    """A parameter is missing, malformed or out of range (HTTP 400)."""

    code = "invalid_parameter"


class UnknownTaskError(ServeError):
    """No export exists for the task (HTTP 404)."""

    status = 404
    code = "unknown_task"


class UnknownModelError(ServeError):
    """No model of that name on this server (HTTP 404; Open Inference Protocol).

    Example:

    >>> UnknownModelError("unknown model 'x'").status
    404
    """

    status = 404
    code = "unknown_model"


class UnknownCategoryError(ServeError):
    """The category is neither a class name nor a class index of the run (HTTP 404)."""

    status = 404
    code = "unknown_category"


class CategoryNotLearnedError(ServeError):
    """The category exists but the task has not learned it yet (HTTP 404)."""

    status = 404
    code = "category_not_learned"


class PayloadTooLargeError(ServeError):
    """The request, or the response it asks for, exceeds a size limit (HTTP 413).

    Example:

    >>> PayloadTooLargeError("request body over the limit").to_json()["error"]["code"]
    'too_large'
    """

    status = 413
    code = "too_large"


class ExportIntegrityError(ServeError):
    """A task's export cannot be loaded (HTTP 503: not the client's doing).

    The other tasks keep serving; this one is unavailable until its export
    is replaced.
    """

    status = 503
    code = "export_integrity"


class ModelNotReadyError(ServeError):
    """A model or version that exists but cannot serve (HTTP 400).

    The Open Inference Protocol answers a model that is not ready with a
    4xx status, as Triton does; the reason is in the message.

    Example:

    >>> ModelNotReadyError("version 2 is not ready").status
    400
    """

    code = "not_ready"
