"""Static files through FastAPI's StaticFiles: served with a cache header, nothing outside."""

from __future__ import annotations

from typing import Any


def test_static_files_are_served_and_cached_and_confined(client: Any) -> None:
    r = client.get("/static/app.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    assert r.headers["cache-control"] == "public, max-age=3600" and r.headers.get("etag")
    assert (
        client.get("/static/live.js").headers["content-type"].startswith(("text/javascript", "application/javascript"))
    )
    assert client.get("/static/no-such-file.css").status_code == 404
    for escape in ("/static/../routes.py", "/static/%2e%2e/routes.py", "/static/..%2froutes.py"):
        assert client.get(escape).status_code == 404, escape
