"""Routes for /dashboard: the web page, one more client of this API (its files
are in api/dashboard/, served as they are; the page reads the JSON API)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

router = APIRouter(include_in_schema=False)

DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "dashboard"
# Only these files are served: nothing else in the folder is reachable by name.
_ASSETS = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "events.js": "text/javascript; charset=utf-8",
}
# Every byte of the page comes from this service: no inline script, no other origin.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@router.get("/dashboard")
async def page() -> FileResponse:
    """The dashboard's one page; it asks for an API key when the service needs one."""
    return FileResponse(
        DASHBOARD_DIR / "index.html", media_type="text/html; charset=utf-8", headers=_HEADERS
    )


@router.get("/dashboard/assets/{name}")
async def asset(name: str) -> FileResponse:
    """The page's script and style sheet."""
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dashboard file {name!r}")
    return FileResponse(DASHBOARD_DIR / name, media_type=media_type, headers=_HEADERS)
