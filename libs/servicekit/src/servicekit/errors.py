"""Errors a use case raises on purpose, and the gRPC status each one becomes."""

from __future__ import annotations

from collections.abc import Sequence

import grpc


class ServiceError(Exception):
    """Base of the errors that are the caller's concern, not a fault of the service."""

    status_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    """A request field is missing or wrong; `field` names it (proto field path). `more` names
    further wrong fields of the same request, so a caller can fix them all at once."""

    status_code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, description: str, more: Sequence[tuple[str, str]] = ()) -> None:
        others = f" (and {len(more)} more)" if more else ""
        super().__init__(f"{field}: {description}{others}")
        self.field = field
        self.description = description
        # Every wrong field, this one first: (field path, description).
        self.violations: tuple[tuple[str, str], ...] = ((field, description), *more)


class NotFound(ServiceError):
    status_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    status_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    status_code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ServiceError):
    """A write made against a revision that is no longer current (optimistic concurrency): the
    caller reads again and retries."""

    status_code = grpc.StatusCode.ABORTED


class PermissionDenied(ServiceError):
    status_code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(ServiceError):
    """A dependency (another service, the database) cannot be reached right now."""

    status_code = grpc.StatusCode.UNAVAILABLE


class PermanentEventError(Exception):
    """An event that can never be processed (it fails domain validation): dead-letter it.

    `reason` is a short code that goes into the dead-letter headers.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ResourceExhausted(ServiceError):
    """A quota or rate limit is reached; the caller may try again later."""

    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED
