"""GraphiQL for developers (development only), served with its assets from this package.

strawberry's page loads React and GraphiQL from a public CDN; provincial government networks
usually have no internet, so the same files (byte-identical npm releases, see
``static/graphiql/LICENSES.md``) are served from here and the page's integrity hashes still
check them.

The page's own script (strawberry's inline one) is replaced by ``static/graphiql/
graphiql-page.js``: opened without a query, or with the demo's generic example, it asks ``me``
which fields the token may read under its ``X-Purpose`` and prefills a query with only those
(derived in the browser, through the API, at page load: the current policy version, not a copy).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

from strawberry.http.ides import get_graphql_ide_html

ASSETS_PATH = "/graphiql-assets"

# CDN address in strawberry's page → vendored file name.
_VENDORED = {
    "https://unpkg.com/react@18.2.0/umd/react.production.min.js": "react.production.min.js",
    "https://unpkg.com/react-dom@18.2.0/umd/react-dom.production.min.js": (
        "react-dom.production.min.js"
    ),
    "https://unpkg.com/js-cookie@3.0.5/dist/js.cookie.min.js": "js.cookie.min.js",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.css": "graphiql.min.css",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.js": "graphiql.min.js",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/style.css": "plugin-explorer.css",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/index.umd.js": (
        "plugin-explorer.umd.js"
    ),
}


def assets_directory() -> Path:
    return Path(str(resources.files("gateway.http").joinpath("static/graphiql")))


PAGE_SCRIPT = "graphiql-page.js"

# strawberry's inline application script: from its example query to the end of the block.
_INLINE_SCRIPT = re.compile(r"<script>\s*const EXAMPLE_QUERY.*?</script>", re.S)


@cache
def graphiql_html() -> str:
    html = get_graphql_ide_html()
    for remote, local in _VENDORED.items():
        html = html.replace(remote, f"{ASSETS_PATH}/{local}")
    html, replaced = _INLINE_SCRIPT.subn(
        lambda _match: f'<script src="{ASSETS_PATH}/{PAGE_SCRIPT}"></script>', html
    )
    if replaced != 1:  # a new strawberry page: the prefill must not silently disappear
        raise RuntimeError("strawberry's GraphiQL page changed: its inline script was not found")
    html = html.replace("<html>", '<html lang="zh-CN">', 1)
    return html.replace(
        "<title>Strawberry GraphiQL</title>", "<title>GraphiQL · 医疗救助信息共享网关</title>"
    )
