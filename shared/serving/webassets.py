"""The dashboard's static files: an allow-list of what may be served, and the vendor copy step.

The page (``web/index.html``, ``app.js``, ``style.css``) uses two npm packages,
pinned in ``package.json``: the official SignalR client (``@microsoft/signalr``)
and TradingView's ``lightweight-charts``. They are shipped as static files, never
loaded from a CDN: ``python -m shared.serving.webassets`` copies the two browser bundles
(and their licence texts) from ``node_modules`` into ``web/vendor/``, which is
what a published function app carries. When ``web/vendor/`` lacks a file (a
fresh checkout after ``npm ci``), it is served straight from ``node_modules``.

Only the names in :data:`PAGES` and :data:`VENDOR` are served, so a request can
never reach any other file.

Examples
--------
>>> asset = resolve_asset("")
>>> asset.path.name, asset.content_type
('index.html', 'text/html; charset=utf-8')
>>> resolve_asset("../function_app.py") is None
True
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
NODE_MODULES = REPO / "node_modules"

PAGES: dict[str, str] = {
    "": "index.html",
    "index.html": "index.html",
    "app.js": "app.js",
    "style.css": "style.css",
}
"""URL path under ``/api/dashboard/`` -> file in ``web/``."""

VENDOR: dict[str, str] = {
    "vendor/signalr.min.js": "@microsoft/signalr/dist/browser/signalr.min.js",
    "vendor/lightweight-charts.standalone.production.js":
        "lightweight-charts/dist/lightweight-charts.standalone.production.js",
    "vendor/lightweight-charts.LICENSE": "lightweight-charts/LICENSE",
    "vendor/signalr.package.json": "@microsoft/signalr/package.json",
}
"""URL path under ``/api/dashboard/`` -> file in ``node_modules`` (copied to ``web/<path>``)."""

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".LICENSE": "text/plain; charset=utf-8",
}

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self' https: wss: ws:; frame-ancestors 'none'; base-uri 'self'"
)
"""Sent with the page: scripts only from the app itself (no CDN, no eval), SignalR anywhere over TLS or
locally; inline styles are allowed because the chart library sets style attributes on its elements."""


@dataclass(frozen=True)
class Asset:
    """A servable file: where it is, its ``Content-Type``, and its ``Cache-Control``."""

    path: Path
    content_type: str
    cache_control: str


def resolve_asset(url_path: str, web: Path = WEB, node_modules: Path = NODE_MODULES) -> Asset | None:
    """The file served for ``url_path`` (relative to ``/api/dashboard/``), or ``None``.

    ``None`` means "not found": the name is not on the allow-list, or the file
    is in neither ``web/`` nor ``node_modules``.
    """
    name = url_path.strip("/")
    if name in PAGES:
        path = web / PAGES[name]
        cache = "no-cache"
    elif name in VENDOR:
        path = web / name
        if not path.is_file():
            path = node_modules / VENDOR[name]
        cache = "public, max-age=86400"
    else:
        return None
    if not path.is_file():
        return None
    suffix = ".LICENSE" if path.name == "LICENSE" or name.endswith(".LICENSE") else path.suffix
    return Asset(path, _TYPES.get(suffix, "application/octet-stream"), cache)


def copy_vendor(web: Path = WEB, node_modules: Path = NODE_MODULES) -> list[Path]:
    """Copy the vendor files from ``node_modules`` into ``web/vendor``; return the written paths.

    Raises
    ------
    FileNotFoundError
        A package file is missing (run ``npm ci`` first).
    """
    written = []
    for url_path, source in VENDOR.items():
        src = node_modules / source
        if not src.is_file():
            raise FileNotFoundError(f"{src} is missing: run `npm ci` first")
        dest = web / url_path
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        written.append(dest)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m shared.serving.webassets``: copy the dashboard's npm files into ``web/vendor``."""
    parser = argparse.ArgumentParser(prog="python -m shared.serving.webassets", description=main.__doc__)
    parser.parse_args(argv)
    for path in copy_vendor():
        print(f"copied {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
