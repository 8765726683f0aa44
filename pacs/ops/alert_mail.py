"""Alert e-mail: one message per alert, by SMTP with STARTTLS or implicit TLS, logged in.

The server's certificate is verified against ``[alerts] smtp_ca_file`` (or the system's trust
store) and must name ``smtp_host``; TLS 1.2 or later. The password is read from
``smtp_password_file`` at each send, and refused when that file may be read by others than
its owner. :meth:`MailChannel.send` returns once the server has accepted the message (250), and
raises :class:`MessageRefusedError` when the server refused that message alone.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import stat
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol

from pacs.core.config_alerts import AlertSettings
from storage.errors import PacsError

TIMEOUT = 30.0


class MailError(PacsError, ValueError):
    """Alert e-mail cannot be sent as configured; the message says why."""


class MessageRefusedError(MailError):
    """The server took the connection and the login but refused this one message."""


class Message(Protocol):
    """What an alert e-mail carries."""

    kind: str
    subject: str
    text: str


def tls_context(ca_file: str) -> ssl.SSLContext:
    """A client context that verifies the server and its name: `ca_file` (PEM), else the system's CAs."""
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def read_password(path: str) -> str:
    """The password in the file `path` (first line); :class:`MailError` if others may read the file."""
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MailError(
            f"[alerts] smtp_password_file {path} may be read by others (mode {mode & 0o777:o}): chmod 600"
        )
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0]:
        raise MailError(f"[alerts] smtp_password_file {path} is empty")
    return lines[0]


class MailChannel:
    """Sends alerts as e-mail through the SMTP server of ``[alerts]``."""

    def __init__(self, settings: AlertSettings, hostname: str) -> None:
        self.settings = settings
        self.hostname = hostname
        self.name = f"mail to {', '.join(settings.mail_to)} via {settings.smtp_host}:{settings.mail_port}"

    def message(self, alert: Message) -> EmailMessage:
        """The e-mail for `alert`: subject ``[PACS HOST] kind: subject``, the text, no attachment."""
        settings = self.settings
        mail = EmailMessage()
        mail["From"] = settings.mail_from
        mail["To"] = ", ".join(settings.mail_to)
        mail["Subject"] = f"[PACS {self.hostname}] {alert.kind}: {alert.subject}"
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = make_msgid(domain=settings.mail_from.rpartition("@")[2])
        mail["X-PACS-Alert"] = alert.kind
        mail.set_content(f"{alert.text}\n\n-- \nmini-PACS on {self.hostname}\n")
        return mail

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        context = tls_context(settings.smtp_ca_file)
        if settings.smtp_security == "tls":
            return smtplib.SMTP_SSL(settings.smtp_host, settings.mail_port, timeout=TIMEOUT, context=context)
        smtp = smtplib.SMTP(settings.smtp_host, settings.mail_port, timeout=TIMEOUT)
        try:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise MailError(f"{settings.smtp_host} does not offer STARTTLS; not sending in clear")
            smtp.starttls(context=context)
            smtp.ehlo()
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, alert: Message) -> None:
        """Send `alert` in one e-mail; return once the server accepted it (else OSError or MailError)."""
        password = read_password(self.settings.smtp_password_file) if self.settings.smtp_user else ""
        with self._connect() as smtp:
            try:
                if self.settings.smtp_user:
                    smtp.login(self.settings.smtp_user, password)
            except smtplib.SMTPException as exc:
                raise MailError(f"{self.settings.smtp_host}: {_smtp_reason(exc)}") from None
            try:
                smtp.send_message(self.message(alert))
            except smtplib.SMTPException as exc:
                raise MessageRefusedError(f"{self.settings.smtp_host}: {_smtp_reason(exc)}") from None


def _smtp_reason(exc: smtplib.SMTPException) -> str:
    """The server's answer in `exc` in one line."""
    code, answer = getattr(exc, "smtp_code", None), getattr(exc, "smtp_error", b"")
    text = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else str(answer or exc)
    return " ".join(f"{code or ''} {text}".split()) or type(exc).__name__
