"""WADO-RS retrieval (PS3.18 10.4): frames.

A frame is answered in the viewer's own form by :func:`webviewer.dicomweb.viewer_frame`.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort

from webviewer.auth import physician_required
from webviewer.dicomweb import audited_once, find_instance, viewer_frame

bp = Blueprint("wado", __name__, url_prefix="/dicomweb")


@bp.get("/studies/<study>/series/<series_uid>/instances/<sop>/frames/<frame_list>")
@physician_required
def frames(study: str, series_uid: str, sop: str, frame_list: str) -> Response:
    """WADO-RS: frames of an instance."""
    info = find_instance(study, series_uid, sop)
    if not frame_list.isdigit():
        abort(404)
    audited_once(study)
    return viewer_frame(info, int(frame_list))
