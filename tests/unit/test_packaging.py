"""A wheel of the project carries what it needs at run time (the migrations, the copy of Ed-Fi's
dbo tables, the development templates, the dashboard's files) and finds them inside the package,
not in a source tree: a non-editable install works."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
from services.admin_db.migrate import EDFI_ADMIN_COPY, MIGRATIONS_DIR
from services.runtime.templates import TEMPLATE_SQL
import services
print(services.__file__)
print(sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql"))[0])
print(EDFI_ADMIN_COPY.is_file(), (TEMPLATE_SQL / "minimal.sql").is_file())
from services.gateway.dashboard import FILES, _file
print(all(_file(name) for name in [*FILES, "index.html"]))
"""


@pytest.mark.skipif(shutil.which("uv") is None, reason="needs uv to build the wheel")
def test_a_wheel_finds_its_migrations_and_data_inside_the_package(tmp_path: Path) -> None:
    subprocess.run(
        ["uv", "build", "--wheel", "--out-dir", str(tmp_path / "dist"), "-q"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    [wheel] = (tmp_path / "dist").glob("*.whl")
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(wheel).extractall(unpacked)
    # The wheel's own code first; the dependencies from this environment; no source tree (-S: no
    # .pth files, so the editable install of this checkout is not on the path).
    paths = [str(unpacked), *site.getsitepackages()]
    run = subprocess.run(
        [sys.executable, "-S", "-c", PROBE],
        cwd=tmp_path,
        env={"PYTHONPATH": ":".join(paths)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    located, first, found, dashboard = run.stdout.splitlines()
    assert located.startswith(str(unpacked))
    assert first == "0001_edfi_admin_dbo_subset.sql"
    assert found == "True True"
    assert dashboard == "True"  # the dashboard's page, script and style
