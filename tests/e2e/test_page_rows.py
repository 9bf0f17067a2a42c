"""A page of `GET /v2/dbInstances` is exactly the rows of `SELECT * … ORDER BY id OFFSET …
LIMIT …` (issue 18: the API finds the page's ids first, then reads only those rows), with and
without a status filter, at the start, the middle and past the end."""

from __future__ import annotations

import uuid

import httpx
import psycopg

from services.runtime.settings import Settings


def test_pages_are_the_rows_of_the_plain_offset_select(
    api: httpx.Client, settings: Settings
) -> None:
    tag = uuid.uuid4().hex[:8]
    with psycopg.connect(settings.admin_database_url, autocommit=True) as c:
        c.execute(
            "INSERT INTO edfi_im.dbinstances (name, status, databasetemplate, databasename, "
            "imported, createdat, lastmodifieddate, lastrefreshed) "
            "SELECT 'Rows ' || %s || ' ' || g, "
            "CASE WHEN g %% 3 = 0 THEN 'Error' ELSE 'Completed' END, 'Minimal', "
            "'EdFi_Ods_rows_' || %s || '_' || g, false, now(), now(), now() "
            "FROM generate_series(1, 60) g",
            (tag, tag),
        )
        total = c.execute("SELECT count(*) FROM edfi_im.dbinstances").fetchone()
        assert total is not None
        cases = [(0, 25, None), (17, 7, None), (int(total[0]) - 3, 25, None), (5, 10, "Error")]
        for offset, limit, status in cases:
            where = "" if status is None else "WHERE status = %(status)s "
            expected = [
                row[0]
                for row in c.execute(
                    f"SELECT id FROM edfi_im.dbinstances {where}"
                    "ORDER BY id OFFSET %(offset)s LIMIT %(limit)s",
                    {"offset": offset, "limit": limit, "status": status},
                ).fetchall()
            ]
            params: dict[str, str | int] = {"offset": offset, "limit": limit}
            if status is not None:
                params["status"] = status
            page = api.get("/v2/dbInstances", params=params)
            assert page.status_code == 200
            assert [i["id"] for i in page.json()] == expected
            assert all(status is None or i["status"] == status for i in page.json())
