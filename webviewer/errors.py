"""Error answers in the app's own layout: 400 (and a failed CSRF check), 403, 404, 405, 413 and 500.

A person in a browser gets a page of :file:`templates/errors/error.html` (the header and
navigation of ``base.html``) that says in words what happened and where to go on: "You do not
have access to this page", "No such study". A script or DICOMweb client (paths under the
DICOMweb root, the viewer's fetches, a request that does not accept HTML) gets what it got
before: an answer a view built itself (a ``text/plain`` reason, a ``WWW-Authenticate``
challenge) goes out unchanged, and a bare one becomes one ``text/plain`` line. No answer shows
a stack trace, and every one is ``Cache-Control: no-store``.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wrappers import Response

from webviewer.auth import current_account, is_api_request

CODES = (400, 403, 404, 405, 413, 500)


@dataclass(frozen=True)
class Explanation:
    """What an error page says: its heading and one sentence on what to do."""

    title: str
    advice: str


EXPLANATIONS = {
    400: Explanation("The request could not be understood", "Go back, reload the page and try again."),
    403: Explanation(
        "You do not have access to this page",
        "Your account does not have the role this page needs. Ask an administrator if you should have it.",
    ),
    404: Explanation("No such page", "The address may be mistyped, or what it showed is gone."),
    405: Explanation(
        "This page cannot be used that way", "Go back and use the page's own buttons and links."
    ),
    413: Explanation(
        "That was more than this page accepts", "Send less at a time: a form takes at most 64 KiB."
    ),
    500: Explanation(
        "Something went wrong on the server",
        "It has been logged. Try again in a moment, and tell the administrator if it goes on.",
    ),
}
CSRF_EXPIRED = Explanation(
    "This form has expired",
    "The form was open too long, or did not come from this site. Reload the page and send it again.",
)
NO_SUCH_STUDY = Explanation(
    "No such study",
    "The study is not in the archive (it may have been deleted), or the link is wrong. "
    "Search for it in the study list.",
)


def _explanation(error: HTTPException) -> Explanation:
    """What the page of `error` says, by its code and, for 400 and 404, by what failed."""
    if isinstance(error, CSRFError):
        return CSRF_EXPIRED
    if error.code == 404 and request.path.startswith("/studies/"):
        return NO_SUCH_STUDY
    return EXPLANATIONS.get(error.code or 500, EXPLANATIONS[500])


def _home() -> tuple[str, str]:
    """Where the page's link leads, and its words: the user's start page, or the login."""
    account = current_account()
    if account is None:
        return url_for("auth.login"), "Go to the login"
    if account.is_physician:
        return url_for("studies.index"), "Back to the study list"
    return url_for("admin.users"), "Back to the admin pages"


def _text(error: HTTPException) -> Response:
    """The answer for a script or client: its own, if a view built one, else one line of text."""
    if error.response is not None:
        return error.response
    said = f": {error.description}" if isinstance(error, CSRFError) else ""
    response = Response(f"{error.code} {error.name}{said}\n", status=error.code, mimetype="text/plain")
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def _page(error: HTTPException) -> Response:
    """The error page in the app's layout (a line of text if the layout itself cannot be drawn)."""
    if error.response is not None:
        return error.response
    explanation = _explanation(error)
    try:
        home, home_label = _home()
        body = render_template(
            "errors/error.html",
            code=error.code,
            explanation=explanation,
            home=home,
            home_label=home_label,
            detail=error.description if isinstance(error, CSRFError) else "",
        )
    except Exception:
        body = f"{explanation.title}. {explanation.advice}\n"
    response = Response(body, status=error.code, mimetype="text/html")
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def _for_a_script() -> bool:
    """Whether this request comes from a script or client: an API path, or an Accept without HTML."""
    accepted = request.accept_mimetypes
    return is_api_request() or (bool(accepted) and not accepted.accept_html)


def handle(error: HTTPException) -> Response:
    """Answer `error` as a page for a person, or as text for a script or client; never cached.

    An unexpected exception reaches here as a 500 that Flask has logged with its trace.
    """
    response = _text(error) if _for_a_script() else _page(error)
    response.headers["Cache-Control"] = "no-store"
    return response


def register(app: Flask) -> None:
    """Answer the errors of :data:`CODES` (and CSRF failures) with :func:`handle`."""
    for code in CODES:
        app.register_error_handler(code, handle)
    app.register_error_handler(CSRFError, handle)
