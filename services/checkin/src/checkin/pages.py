"""The door staff app (`/scan`) and the organiser dashboard (`/dashboard`): static pages over the API.

Both are plain files under `static/`, served with a strict Content-Security-Policy: no inline
scripts or styles, nothing loaded from elsewhere, and no framing. The camera and WebCrypto need a
secure context, so outside localhost these pages must be served over HTTPS.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

STATIC: Final = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)

MEDIA_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".wav": "audio/wav",
}

# File names only, never a path: nothing outside the page's own folder can be asked for.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9]+)+$", re.IGNORECASE)

router = APIRouter(include_in_schema=False)


def _file(folder: str, name: str, *, cache: bool) -> Response:
    path = STATIC / folder / name
    suffix = path.suffix.lower()
    if not _NAME.match(name) or suffix not in MEDIA_TYPES or not path.is_file():
        return JSONResponse({"code": "not_found", "message": "There is nothing at this address."}, status_code=404)
    response = Response(path.read_bytes(), media_type=MEDIA_TYPES[suffix])
    # The pages themselves are always fetched fresh; the service worker keeps the offline copy.
    response.headers["Cache-Control"] = "public, max-age=300" if cache else "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if suffix == ".html":
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Permissions-Policy"] = "camera=(self), microphone=(), geolocation=()"
    return response


@router.get("/scan")
async def scanner_page() -> Response:
    return _file("scan", "index.html", cache=False)


@router.get("/scan/sw.js")
async def scanner_service_worker() -> Response:
    response = _file("scan", "sw.js", cache=False)
    # Served from /scan/ but controls the page at /scan itself.
    response.headers["Service-Worker-Allowed"] = "/scan"
    return response


@router.get("/scan/{name}")
async def scanner_file(name: str) -> Response:
    return _file("scan", name, cache=False)


@router.get("/dashboard")
async def dashboard_page() -> Response:
    return _file("dashboard", "index.html", cache=False)


@router.get("/dashboard/{name}")
async def dashboard_file(name: str) -> Response:
    return _file("dashboard", name, cache=False)


@router.get("/static/js/{name}")
async def shared_script(name: str) -> Response:
    return _file("js", name, cache=True)


@router.get("/static/css/{name}")
async def shared_style(name: str) -> Response:
    return _file("css", name, cache=True)


@router.get("/static/vendor/{name}")
async def vendored_script(name: str) -> Response:
    return _file("vendor", name, cache=True)
