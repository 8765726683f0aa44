"""User accounts under attack (issue #11): parallel attempts from threads and processes, lockout audit.

Time comes from a fake clock handed to :class:`Accounts`, so nothing here sleeps.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import TypeVar

import pytest

from pacs.core import accounts as pacs_accounts
from pacs.core.accounts import (
    ACCOUNT_FREE_FAILURES,
    ADDRESS_FREE_FAILURES,
    LOCKOUT_AFTER,
    LOCKOUT_PERIOD,
    MAX_BACKOFF,
    Accounts,
    LoginVerdict,
)
from pacs.core.audit import EventID
from pacs.core.config import load_settings
from pacs.core.context import Context, open_pacs
from pacs.core.throttle import PENDING_TTL
from tests.core.accounts_helpers import (
    ADDRESS,
    OTHER_ADDRESS,
    PASSPHRASE,
    PHYSICIAN,
    Clock,
    _account,
    _code_outside_window,
    _enrol,
    _fail,
)

T = TypeVar("T")


# Attacks on throttling and lockout (issue #11).

PARALLEL_ATTEMPTS = 20


def _at_once(attempt: Callable[[int], T], count: int = PARALLEL_ATTEMPTS) -> list[T]:
    """`attempt(n)` for n < `count`, all threads released together, in bounded time."""
    barrier = threading.Barrier(count)

    def run(n: int) -> T:
        barrier.wait(timeout=30)
        return attempt(n)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count), timeout=120))


def test_parallel_wrong_passwords_run_no_more_hashes_than_the_free_failures(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    hashes: list[str] = []
    lock = threading.Lock()
    matches = pacs_accounts.password_matches

    def counting(stored: str, password: str) -> bool:
        with lock:
            hashes.append(password)
        return matches(stored, password)

    monkeypatch.setattr(pacs_accounts, "password_matches", counting)
    verdicts = _at_once(lambda n: accounts.check_password("doc", f"wrong guess {n}", ADDRESS).verdict)
    assert len(hashes) == verdicts.count(LoginVerdict.WRONG) == ACCOUNT_FREE_FAILURES
    assert verdicts.count(LoginVerdict.THROTTLED) == PARALLEL_ATTEMPTS - ACCOUNT_FREE_FAILURES


def test_parallel_wrong_codes_are_checked_no_more_than_the_free_failures(
    accounts: Accounts, clock: Clock
) -> None:
    totp, _ = _enrol(accounts, clock)
    wrong = _code_outside_window(totp, clock())
    verdicts = _at_once(lambda n: accounts.check_second_factor("doc", wrong, ADDRESS))
    assert verdicts.count(LoginVerdict.WRONG) == ACCOUNT_FREE_FAILURES
    assert verdicts.count(LoginVerdict.THROTTLED) == PARALLEL_ATTEMPTS - ACCOUNT_FREE_FAILURES


def test_parallel_attempts_from_many_addresses_reveal_no_more_passwords_than_the_lockout(
    accounts: Accounts,
) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    checks = _at_once(lambda n: accounts.check_password("doc", f"wrong guess {n}", f"198.51.100.{n + 1}"))
    assert sum(not check.deferred for check in checks) == LOCKOUT_AFTER
    assert _account(accounts, "doc").locked


def test_an_attempt_in_flight_stops_counting_when_it_is_never_settled(
    accounts: Accounts, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", ACCOUNT_FREE_FAILURES - 1)

    def dies(stored: str, password: str) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(pacs_accounts, "password_matches", dies)
    monkeypatch.setattr(Accounts, "_settle", lambda *args, **kwargs: None)
    with pytest.raises(KeyboardInterrupt):
        accounts.check_password("doc", PASSPHRASE, ADDRESS)
    monkeypatch.undo()
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is LoginVerdict.THROTTLED
    clock.advance(PENDING_TTL.total_seconds())
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is LoginVerdict.ACCEPTED


def test_attackers_failures_from_one_address_leave_the_right_password_and_code_from_another(
    accounts: Accounts, clock: Clock
) -> None:
    totp, _ = _enrol(accounts, clock)
    for n in range(LOCKOUT_AFTER + 6):
        clock.advance(MAX_BACKOFF.total_seconds())
        assert accounts.check_password("doc", f"wrong guess {n}", ADDRESS).verdict is LoginVerdict.WRONG
    assert accounts.retry_after("doc", ADDRESS) > 0
    check = accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS)
    assert check.verdict is LoginVerdict.ACCEPTED
    assert accounts.check_second_factor("doc", totp.at(clock()), OTHER_ADDRESS) is LoginVerdict.ACCEPTED


def test_a_deferred_wrong_password_fails_even_with_the_right_code(accounts: Accounts, clock: Clock) -> None:
    totp, _ = _enrol(accounts, clock)
    _fail(accounts, "doc", LOCKOUT_AFTER, ADDRESS)
    verdict = accounts.check_second_factor("doc", totp.at(clock()), OTHER_ADDRESS, password_right=False)
    assert verdict is LoginVerdict.WRONG
    assert accounts.check_second_factor("doc", totp.at(clock()), OTHER_ADDRESS) is LoginVerdict.ACCEPTED


def test_failures_from_one_address_are_throttled_for_that_address(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    for n in range(ADDRESS_FREE_FAILURES):
        accounts.check_password(f"guess{n}", "a wrong guess", ADDRESS)
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is LoginVerdict.THROTTLED
    assert accounts.check_second_factor("doc", "123456", ADDRESS) is LoginVerdict.THROTTLED


def test_lockout_expires_by_itself(accounts: Accounts, clock: Clock) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", LOCKOUT_AFTER)
    clock.advance(LOCKOUT_PERIOD.total_seconds() - 1)
    assert _account(accounts, "doc").locked
    clock.advance(1)
    assert not _account(accounts, "doc").locked
    check = accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS)
    assert check.verdict is LoginVerdict.ACCEPTED and not check.deferred


def test_further_failures_keep_the_lock_until_the_period_after_the_last(
    accounts: Accounts, clock: Clock
) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", LOCKOUT_AFTER)
    clock.advance(LOCKOUT_PERIOD.total_seconds() / 2)
    accounts.record_failure("doc", OTHER_ADDRESS)
    clock.advance(LOCKOUT_PERIOD.total_seconds() / 2)
    assert _account(accounts, "doc").locked


def _security_alerts(pacs: Context) -> list[dict[str, object]]:
    return [
        {"user_id": r.user_id, "source": r.source, **json.loads(r.details)}
        for r in pacs.audit.records()
        if r.event_id == str(EventID.SECURITY_ALERT)
    ]


def test_lockout_is_audited_once_by_the_accounts_service(pacs: Context, clock: Clock) -> None:
    accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit, now=clock)
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _at_once(lambda n: accounts.check_password("doc", "a wrong guess", f"198.51.100.{n + 1}"))
    locks = [alert for alert in _security_alerts(pacs) if "locked" in str(alert["what"])]
    assert len(locks) == 1
    assert locks[0]["user_id"] == "doc" and str(locks[0]["source"]).startswith("198.51.100.")


def test_unlock_is_audited_by_the_accounts_service_with_its_actor(pacs: Context, clock: Clock) -> None:
    accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit, now=clock)
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", LOCKOUT_AFTER)
    accounts.lift_lockout("doc", actor="root@cli")
    assert _security_alerts(pacs)[-1] == {
        "user_id": "root@cli",
        "source": "",
        "what": "lockout lifted",
        "user": "doc",
    }


PROCESSES = 5


def _attempt_in_another_process(data_dir: Path, barrier: Barrier, moment: float, results: Queue[str]) -> None:
    """One wrong password for "doc" from a process of its own, at the fixed `moment`."""
    pacs = open_pacs(load_settings(data_dir, {}))
    try:
        accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit, now=lambda: moment)
        barrier.wait(timeout=60)
        results.put(accounts.check_password("doc", "a wrong guess", ADDRESS).verdict.name)
    finally:
        pacs.close()


def test_parallel_wrong_passwords_from_several_processes_run_no_more_hashes_than_the_free_failures(
    pacs: Context, accounts: Accounts, clock: Clock
) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(PROCESSES), spawn.Queue()
    workers = [
        spawn.Process(
            target=_attempt_in_another_process, args=(pacs.settings.data_dir, barrier, clock(), results)
        )
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    verdicts = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert verdicts.count(LoginVerdict.WRONG.name) == ACCOUNT_FREE_FAILURES
    assert verdicts.count(LoginVerdict.THROTTLED.name) == PROCESSES - ACCOUNT_FREE_FAILURES
