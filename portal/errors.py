"""Domain errors raised by services and selectors; views and the API map them to responses."""


class ApplicationError(Exception):
    """A request the domain refuses, with a message a user can act on."""

    code = "invalid"

    def __init__(
        self, message: str, *, field_errors: dict[str, list[str]] | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.message = message
        self.field_errors = field_errors or {}
        if code:
            self.code = code


class NotFound(ApplicationError):
    code = "not_found"


class PermissionDenied(ApplicationError):
    code = "permission_denied"


class Conflict(ApplicationError):
    code = "conflict"
