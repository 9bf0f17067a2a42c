"""What the hostile-input tests (contract and end-to-end) check after each refusal."""

from __future__ import annotations

import httpx

from tests.support import pg
from tests.support.polling import problem


def counts(admin_database: str) -> tuple[int, int, int]:
    """Instances, jobs and schedules in the admin database: a refusal changes none of them."""
    return (
        pg.query(admin_database, "SELECT count(*) FROM edfi_im.dbinstances")[0][0],
        pg.query(admin_database, "SELECT count(*) FROM edfi_im.jobs")[0][0],
        pg.query(admin_database, "SELECT count(*) FROM edfi_im.schedules")[0][0],
    )


def refused(r: httpx.Response, field: str) -> None:
    """A 422 problem naming `field` among its errors."""
    body = problem(r, 422)
    assert field in body["errors"], body
