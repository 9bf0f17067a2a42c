"""Write (or check) the JSON Schema of every contract under contracts/schemas/."""

from __future__ import annotations

import json
from pathlib import Path

from contracts.messages import ALL_MESSAGES, message_type

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def rendered() -> dict[str, str]:
    out: dict[str, str] = {}
    for cls in ALL_MESSAGES:
        schema = cls.model_json_schema()
        schema["$id"] = message_type(cls)
        out[f"{message_type(cls)}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def write_all(directory: Path, files: dict[str, str]) -> list[Path]:
    """Write each rendered file (name -> text) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def export() -> list[Path]:
    return write_all(SCHEMA_DIR, rendered())
