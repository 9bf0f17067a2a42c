"""One exception hierarchy; each class's docstring is its default message."""

from __future__ import annotations


class InstanceManagerError(Exception):
    """Instance manager error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigurationError(InstanceManagerError):
    """The configuration is not usable."""


class TransientError(InstanceManagerError):
    """A temporary failure; the step may succeed if retried."""


class PermanentError(InstanceManagerError):
    """A failure that retrying will not fix."""


class DatabaseExistsError(PermanentError):
    """The target database already exists and this system did not create it for this instance."""


class TemplateMissingError(PermanentError):
    """The template database does not exist on the ODS server."""
