"""Errors that domain code raises and the API edge renders as jupyter_server does."""


class JupyterError(Exception):
    """Raised by domain code; the client sees {"message": ..., "reason": ...}."""

    status = 500

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message, self.reason = message, reason

    def model(self) -> dict:
        """Return the JSON error body jupyter_server sends."""
        return {"message": self.message, "reason": self.reason}


class BadRequest(JupyterError):
    status = 400


class Forbidden(JupyterError):
    status = 403


class NotFound(JupyterError):
    status = 404


class MethodNotAllowed(JupyterError):
    status = 405


class Conflict(JupyterError):
    status = 409


class Gone(JupyterError):
    status = 410


class PayloadTooLarge(JupyterError):
    status = 413


class TooManyRequests(JupyterError):
    status = 429


class NotImplementedByServer(JupyterError):
    """501, with the ``short_message`` jupyter_server adds for missing kernels."""

    status = 501

    def __init__(
        self, message: str, *, short_message: str, reason: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.short_message = short_message

    def model(self) -> dict:
        return {**super().model(), "short_message": self.short_message}
