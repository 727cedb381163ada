"""The chat page: one HTML file, one stylesheet, ES modules; no build step.

The page shows model output, which is untrusted. Answers are Markdown that
static/markdown.js renders with markdown-it (raw HTML off) and sanitizes with
DOMPurify before any of it reaches the page; the page's
Content-Security-Policy is the last line: scripts only from our origin (no
inline script, no `on...=` attributes, no `eval`), so even a rendering bug
could not run injected markup. With access control off, the session id in
the page URL is the only credential to the chat, so no Referer ever carries
it to a linked site (and links in answers open with `rel="noopener
noreferrer"`). With it on, the page takes its token from the URL fragment
(`#access_token=`), which browsers never send, and drops it from the address
bar at once. No other site may frame the page (clickjacking): CSP's
`frame-ancestors`, and X-Frame-Options for browsers that predate it.

The page's transport and answer model are the JS client library
(clients/js/src), served as it is under /static/client/: one copy, imported
by the page's modules, from our origin like the rest of static/.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, current_app, render_template, send_from_directory

bp = Blueprint("pages", __name__)

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


@bp.get("/")
def index() -> Response:
    response = Response(render_template("index.html"), mimetype="text/html")
    response.headers.update(PAGE_HEADERS)
    return response


@bp.get("/favicon.ico")
def favicon() -> Response:
    """The page links its icon, but browsers also ask any origin for /favicon.ico
    (a JSON response opened in a tab, say): the same SVG, not a 404 in the console."""
    return send_from_directory(
        current_app.static_folder, "favicon.svg", mimetype="image/svg+xml", max_age=86400
    )


@bp.get("/static/client/<path:filename>")
def client_module(filename: str) -> Response:
    """A module of the JS client (clients/js/src), as the page imports it: no build step,
    no copy. Cached as static/ is (Flask's static settings), served as JavaScript."""
    if not filename.endswith(".js"):
        abort(404)
    source = Path(current_app.static_folder).parent / "clients" / "js" / "src"
    return send_from_directory(source, filename, mimetype="text/javascript")
