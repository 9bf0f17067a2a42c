"""The AsyncAPI documents of the consumer services (built by each service's `asyncapi()`),
written to contracts/asyncapi/: the composition root is the one place that imports every
service."""

from __future__ import annotations

import json
from pathlib import Path

from contracts.schema_export import write_all
from services.provisioner.app import asyncapi as provisioner
from services.runtime.settings import Settings
from services.scheduler.app import asyncapi as scheduler
from services.status.app import asyncapi as status

ASYNCAPI_DIR = Path(__file__).resolve().parents[2] / "contracts" / "asyncapi"

# The documents describe the default configuration, whatever the environment says.
DOCUMENTED_SETTINGS = Settings.model_construct(environment="development")


def rendered(settings: Settings = DOCUMENTED_SETTINGS) -> dict[str, str]:
    """Each consumer service's document, by file name."""
    out = {}
    for name, build in (("provisioner", provisioner), ("status", status), ("scheduler", scheduler)):
        document = json.loads(build(settings).to_specification().to_json())
        out[f"{name}.json"] = json.dumps(document, indent=2, sort_keys=True) + "\n"
    return out


def export() -> list[Path]:
    return write_all(ASYNCAPI_DIR, rendered())
