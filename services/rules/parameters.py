"""What a job (and the request that asks for it) may say: its parameters, checked without the
database (names, templates, the length of the database name), the same for an HTTP request and a
schedule's fire. Pydantic models in camelCase, as Ed-Fi Admin API 2 writes JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_serializer,
    field_validator,
)
from pydantic.alias_generators import to_camel

from contracts.messages import MaintenanceTask
from services.rules.errors import InvalidError
from services.rules.naming import Printable, database_name, database_name_problem, name_problem
from services.rules.states import JobType


class NamingSettings(Protocol):
    """What a job's names are checked against (services/runtime/settings.py has it)."""

    @property
    def templates(self) -> dict[str, str]: ...
    @property
    def database_name_pattern(self) -> str: ...


Settings = NamingSettings


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


def checked_name(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


# What Ed-Fi's dbo tables hold: contextkey, contextvalue and derivativetype are VARCHAR(50).
DetailText = Annotated[
    str, StringConstraints(min_length=1, max_length=50, pattern=r"^[^\x00-\x1f]+$")
]


class OdsInstanceContextIn(CamelModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    context_key: DetailText = Field(description="e.g. schoolYear")
    context_value: DetailText = Field(description="e.g. 2027")


class OdsInstanceDerivativeIn(CamelModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    derivative_type: Literal["ReadReplica", "Snapshot"] = Field(
        description="Ed-Fi's derivative types"
    )


class InstanceDetails(CamelModel):
    """What Ed-Fi keeps about an instance besides its database: written to
    dbo.odsinstances.instancetype, dbo.odsinstancecontexts and dbo.odsinstancederivatives."""

    instance_type: Printable | None = Field(
        default=None, min_length=1, max_length=100, description="e.g. DistrictSpecific"
    )
    ods_instance_contexts: list[OdsInstanceContextIn] = Field(
        default_factory=list, max_length=20, description="One value per key"
    )
    ods_instance_derivatives: list[OdsInstanceDerivativeIn] = Field(
        default_factory=list, max_length=2, description="One of each type"
    )

    @field_validator("ods_instance_contexts")
    @classmethod
    def _one_value_per_key(cls, value: list[OdsInstanceContextIn]) -> list[OdsInstanceContextIn]:
        keys = [c.context_key.lower() for c in value]
        if len(set(keys)) != len(keys):
            raise ValueError("each contextKey may appear once")
        return value

    @field_validator("ods_instance_derivatives")
    @classmethod
    def _one_of_each_type(
        cls, value: list[OdsInstanceDerivativeIn]
    ) -> list[OdsInstanceDerivativeIn]:
        types = [d.derivative_type for d in value]
        if len(set(types)) != len(types):
            raise ValueError("each derivativeType may appear once")
        return value

    def stored(self) -> dict[str, Any]:
        """The edfi_im.dbinstances columns."""
        return {
            "instancetype": self.instance_type,
            "contexts": [c.model_dump(by_alias=True) for c in self.ods_instance_contexts],
            "derivatives": [d.model_dump(by_alias=True) for d in self.ods_instance_derivatives],
        }


class CreateDbInstance(InstanceDetails):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Grand Bend", "databaseTemplate": "Minimal"}]},
    )

    name: str = Field(description="1-46 characters: ASCII letters, digits, space, underscore")
    database_template: str = Field(description="A configured template, e.g. Minimal or Sample")

    _valid_name = field_validator("name")(checked_name)


class RenameDbInstance(CamelModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Grand Bend 2027"}]},
    )

    name: str = Field(description="The new name: same rule as for a create")

    _valid_name = field_validator("name")(checked_name)


class _Parameters(CamelModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class RenameInstanceParameters(_Parameters):
    id: int = Field(ge=1, le=2_147_483_647, description="The instance to rename")
    name: str = Field(description="The new name: same rule as for a create")

    _valid_name = field_validator("name")(checked_name)


class DeleteInstanceParameters(_Parameters):
    id: int = Field(ge=1, le=2_147_483_647, description="The instance to delete")


class ReconcileParameters(_Parameters):
    repair: bool = Field(
        default=True, description="Also repair what is safe to repair (imports unmanaged rows)"
    )


def whole(days: float) -> int | float:
    """A number of days as given: 90, not 90.0 (a fraction stays one)."""
    return int(days) if float(days).is_integer() else days


class PruneParameters(_Parameters):
    older_than_days: float | None = Field(
        default=None, gt=0, le=36_500, description="Default: the EDFI_IM_RETENTION_DAYS setting"
    )

    @field_serializer("older_than_days")
    def _as_given(self, days: float | None) -> int | float | None:
        return None if days is None else whole(days)


PARAMETERS: dict[JobType, type[BaseModel]] = {
    JobType.CREATE_INSTANCE: CreateDbInstance,
    JobType.RENAME_INSTANCE: RenameInstanceParameters,
    JobType.DELETE_INSTANCE: DeleteInstanceParameters,
    JobType.RECONCILE: ReconcileParameters,
    JobType.PRUNE: PruneParameters,
}
MAINTENANCE = {JobType.RECONCILE: MaintenanceTask.RECONCILE, JobType.PRUNE: MaintenanceTask.PRUNE}


def parse_parameters(job_type: JobType, raw: Any, field: str = "parameters") -> BaseModel:
    """The job's parameters as its model; a 422 naming each bad field (`field.name`, …)."""
    try:
        return PARAMETERS[job_type].model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for err in exc.errors():
            where = ".".join([field, *(str(p) for p in err["loc"])])
            errors.setdefault(where, []).append(err["msg"])
        raise InvalidError.fields(errors) from None


def create_names(settings: Settings, name: str, template: str, field: str = "") -> tuple[str, str]:
    """(template database, new database name) of a create; 422 for an unknown template or a
    name whose database name would be too long."""
    template_database = settings.templates.get(template)
    if template_database is None:
        raise InvalidError.field(
            f"{field}databaseTemplate", f"must be one of {', '.join(sorted(settings.templates))}"
        )
    return template_database, checked_database_name(settings, name, field)


def checked_database_name(settings: Settings, name: str, field: str = "") -> str:
    db_name = database_name(name, settings.database_name_pattern)
    problem = database_name_problem(db_name)
    if problem:
        raise InvalidError.field(f"{field}name", problem)
    return db_name


@dataclass(frozen=True)
class CheckedJob:
    """A job's parameters, and the database names an instance job derives from them."""

    params: BaseModel
    template_database: str | None = None
    database_name: str | None = None


def check_job(
    settings: Settings, job_type: JobType, raw: Any, field: str = "parameters"
) -> CheckedJob:
    """Everything about a job that can be checked without the database: its parameters, its
    template and the length of its database name; a 422 naming `field.<name>` otherwise."""
    params = parse_parameters(job_type, raw, field)
    if isinstance(params, CreateDbInstance):
        template, db_name = create_names(
            settings, params.name, params.database_template, f"{field}."
        )
        return CheckedJob(params, template, db_name)
    if isinstance(params, RenameInstanceParameters):
        return CheckedJob(params, None, checked_database_name(settings, params.name, f"{field}."))
    return CheckedJob(params)
