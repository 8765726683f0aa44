"""``pacs verify``: every stored object re-authenticated and the index checked, audited.

Interrupted writes found on the way are swept (indexed again or removed) and the
unencrypted spool of a stopped server is cleared, unless another process is writing.
"""

from __future__ import annotations

from pacs.core import events
from pacs.core.context import INCOMING, Context
from pacs.ops.reindex import audit_sweep
from storage.archive import VerifyReport


def verify(pacs: Context, *, user: str) -> VerifyReport:
    """Verify the archive of `pacs`, sweep what interrupted writes left, and audit the result."""
    report = pacs.archive.verify(cleanup=True, spool=pacs.settings.data_dir / INCOMING)
    sweep = report.sweep
    audit_sweep(pacs.audit, sweep, why="verify", actor=user)
    pacs.audit.append(
        events.verify_run(
            by=user,
            ok=report.ok,
            checked=report.checked,
            damaged=len(report.damaged),
            index_problems=len(report.inconsistent),
            reindexed=len(sweep.reindexed),
            incomplete_removed=len(sweep.removed),
            leftovers_removed=report.leftovers if report.cleaned else 0,
            spool_files_removed=len(report.spool_files) if report.cleaned else 0,
        )
    )
    return report
