"""Where our time goes, for ``bench/web_dicomweb.py --profile``: each request kind once under cProfile,
in this process through Flask's test client (no TLS, no sockets), after one untimed request of it.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time

from flask.testing import FlaskClient

from bench.common import MB
from bench.dicomweb_client import bearer_headers
from bench.dicomweb_measure import DICOM_ACCEPT, FRAME_ACCEPT, JSON_ACCEPT, Plan, SeriesRef
from pacs.core.context import Context

ROOT = "/dicomweb"
TOP = 15


def _requests(series: SeriesRef, plan: Plan) -> list[tuple[str, str, str]]:
    """(label, path, Accept) of each kind; the frame is the middle slice's."""
    path = f"{ROOT}/studies/{series.study_uid}/series/{series.series_uid}"
    middle = series.sop_uids[len(series.sop_uids) // 2]
    return [
        ("QIDO", f"{ROOT}/studies?PatientName={plan.prefixes[0]}&limit={plan.limit}", JSON_ACCEPT),
        ("frame", f"{path}/instances/{middle}/frames/1", FRAME_ACCEPT),
        ("metadata", f"{path}/metadata", JSON_ACCEPT),
        ("retrieve", path, DICOM_ACCEPT),
    ]


def _get(client: FlaskClient, path: str, headers: dict[str, str]) -> tuple[int, int, float]:
    """GET through the test client: status, bytes of the body (iterated, not kept) and ms."""
    began = time.perf_counter()
    response = client.get(path, headers=headers, buffered=False)
    size = sum(len(chunk) for chunk in response.response)
    response.close()
    return response.status_code, size, (time.perf_counter() - began) * 1000


def _profiled(client: FlaskClient, path: str, headers: dict[str, str]) -> tuple[int, int, float, str]:
    """:func:`_get` under cProfile: status, bytes, ms, and the top functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    status, size, elapsed = _get(client, path, headers)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(TOP)
    lines = out.getvalue().splitlines()
    header = next((number for number, line in enumerate(lines) if "ncalls" in line), 0)
    return status, size, elapsed, "\n".join(lines[header : header + TOP + 1])


def profile_requests(pacs: Context, series: SeriesRef, plan: Plan) -> None:
    """Each request kind profiled on its first request (cold caches) and on the second, then timed
    a third time unprofiled: the wall times, MB/s and the top functions by own (internal) time.
    Bodies are counted as they are iterated, never joined.

    The web application is imported here, not at the top: the other measurements run
    ``pacs serve`` as a subprocess and need none of it in this process.
    """
    from pacs.serve.https import WebServer

    client = WebServer(pacs).app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    headers = bearer_headers(pacs, "profile")
    for label, path, accept in _requests(series, plan):
        asked = {**headers, "Accept": accept}
        status, size, cold, cold_top = _profiled(client, path, asked)
        _, _, again, again_top = _profiled(client, path, asked)
        plain = _get(client, path, asked)[2]
        rate = f", {size / MB / (plain / 1000):.0f} MB/s" if size > MB else ""
        print(
            f"\nprofile: {label} {path[:70]}...: HTTP {status}, {size} bytes; profiled first {cold:.1f} ms, "
            f"again {again:.1f} ms; unprofiled a third time {plain:.1f} ms{rate}"
        )
        print(f"first:\n{cold_top}\nagain:\n{again_top}")
