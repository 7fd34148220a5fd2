"""GraphiQL for developers (development only), served with its assets from this package.

strawberry's page loads React and GraphiQL from a public CDN; provincial government networks
usually have no internet, so the same files (byte-identical npm releases, see
``static/graphiql/LICENSES.md``) are served from here and the page's integrity hashes still
check them.
"""

from __future__ import annotations

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


@cache
def graphiql_html() -> str:
    html = get_graphql_ide_html()
    for remote, local in _VENDORED.items():
        html = html.replace(remote, f"{ASSETS_PATH}/{local}")
    return html
