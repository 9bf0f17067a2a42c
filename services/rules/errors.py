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


class RefusedError(InstanceManagerError):
    """The request was refused."""

    def __init__(
        self, detail: str, *, errors: dict[str, list[str]] | None = None, **extra: object
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.extra = extra


class NotFoundError(RefusedError):
    """What the request names does not exist."""


class ConflictError(RefusedError):
    """The request conflicts with the current state (an operation in flight, a name taken)."""


class InvalidError(RefusedError):
    """The request is not valid: `errors` names each field and what is wrong with it."""

    @classmethod
    def field(cls, name: str, message: str) -> InvalidError:
        return cls(f"{name}: {message}", errors={name: [message]})

    @classmethod
    def fields(cls, errors: dict[str, list[str]]) -> InvalidError:
        detail = "; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items())
        return cls(detail, errors=errors)


class DisabledError(RefusedError):
    """This kind of operation is turned off by the configuration (`setting` names it)."""

    def __init__(self, detail: str, *, setting: str) -> None:
        super().__init__(detail, setting=setting)
        self.setting = setting
