"""``pacs user add|list|disable|enable|unlock|reset``: the web users."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from pacs.cli.common import EXIT_OK, Handler, Subcommands, actor, add_command, add_group, opened
from pacs.core import events
from pacs.core.accounts import Accounts, parse_roles
from pacs.core.audit import Action
from pacs.core.context import Context


def _accounts(pacs: Context) -> Accounts:
    return Accounts(pacs.database, pacs.keyring, audit=pacs.audit)


def cmd_user_add(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Create a web user with a one-time password."""
    roles = parse_roles(args.role)
    password = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else None
    with opened(args, environ) as pacs:
        account, password = _accounts(pacs).add(args.name, roles, password)
        pacs.audit.append(
            events.user_changed(Action.CREATE, account.name, "user created", by=actor(), roles=account.roles)
        )
    print(f"created {account.name} ({', '.join(sorted(account.roles))})")
    if not args.password_stdin:
        print(f"one-time password: {password}  (to be changed at the first login)")
    return EXIT_OK


def cmd_user_list(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """List web users."""
    with opened(args, environ) as pacs:
        accounts = _accounts(pacs).all()
    print(f"{'user':<24}  {'roles':<16}  {'2FA':<8}  state")
    for account in accounts:
        flags = (
            ("disabled", account.disabled),
            ("locked", account.locked),
            ("must change password", account.must_change_password),
        )
        state = ", ".join(flag for flag, on in flags if on) or "active"
        roles = ",".join(sorted(account.roles))
        second = "enrolled" if account.totp_enrolled else "pending"
        print(f"{account.name:<24}  {roles:<16}  {second:<8}  {state}")
    return EXIT_OK


def _set_disabled(args: argparse.Namespace, environ: Mapping[str, str], disabled: bool) -> int:
    word = "disabled" if disabled else "enabled"
    with opened(args, environ) as pacs:
        account = _accounts(pacs).set_disabled(args.name, disabled)
        pacs.audit.append(
            events.user_changed(Action.UPDATE, account.name, f"user {word}", by=actor(), roles=account.roles)
        )
    print(f"{word} {account.name}")
    return EXIT_OK


def cmd_user_disable(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Disable a web user."""
    return _set_disabled(args, environ, True)


def cmd_user_enable(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Enable a disabled web user again."""
    return _set_disabled(args, environ, False)


def _still_disabled(name: str) -> str:
    """What to say after an unlock or reset of the disabled account `name`: neither enables it."""
    return f"; {name} is disabled and cannot log in: run pacs user enable {name}"


def cmd_user_unlock(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Lift a web user's lockout and login back-off (audited by the accounts service)."""
    with opened(args, environ) as pacs:
        account = _accounts(pacs).lift_lockout(args.name, actor=actor())
    print(f"unlocked {account.name}" + (_still_disabled(account.name) if account.disabled else ""))
    return EXIT_OK


def cmd_user_reset(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Give a web user a new one-time password and lift its lockout (and reset 2FA with --totp).

    A disabled account stays disabled (enabling is ``pacs user enable``), and the output says so.
    """
    with opened(args, environ) as pacs:
        accounts = _accounts(pacs)
        password = accounts.reset_password(args.name, actor=actor())
        what = "password reset, lockout lifted"
        if args.totp:
            accounts.reset_totp(args.name)
            what += ", second factor reset"
        account = accounts.get(args.name)
        assert account is not None
        pacs.audit.append(
            events.user_changed(Action.UPDATE, account.name, what, by=actor(), roles=account.roles)
        )
    print(f"{account.name}: {what}" + (_still_disabled(account.name) if account.disabled else ""))
    print(f"one-time password: {password}  (to be changed at the next login)")
    return EXIT_OK


def register(commands: Subcommands) -> None:
    """Add ``pacs user`` and its actions to the parser."""
    users = add_group(commands, "user", "add, list, disable, enable, unlock or reset web users")

    def action(name: str, handler: Handler, help_: str) -> argparse.ArgumentParser:
        sub = add_command(users, name, handler, help_)
        if name != "list":
            sub.add_argument("name", metavar="NAME")
        return sub

    add = action("add", cmd_user_add, "create a web user with a one-time password")
    add.add_argument("--role", required=True, help="admin, physician, or both: admin,physician")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the initial password from standard input (at least 12 characters, not a common "
        "or breached password, estimated hard to guess)",
    )
    action("list", cmd_user_list, "list web users")
    action("disable", cmd_user_disable, "disable a web user")
    action("enable", cmd_user_enable, "enable a disabled web user again")
    action("unlock", cmd_user_unlock, "lift a lockout (for a locked-out last admin: run it on the box)")
    reset = action("reset", cmd_user_reset, "new one-time password; lifts a lockout")
    reset.add_argument("--totp", action="store_true", help="also remove the second factor (re-enrol)")
