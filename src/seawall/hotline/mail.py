"""Notice e-mail: the message (``multipart/report``: a text part from the recipient's language's
template, a ``message/feedback-report`` part saying it is XARF, and the XARF JSON as ``xarf.json``)
and its delivery with the standard library's ``smtplib`` — run by the worker, never on the event loop.

The layout is the "XARF via SMTP" convention (abusix/xarf): ``multipart/report;
report-type=feedback-report``. Nothing but text and JSON is attached: a CSAM notice never carries media.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import stat
from dataclasses import dataclass
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid
from importlib import resources
from string import Template
from typing import Any

from seawall import __version__
from seawall.config import Settings
from seawall.secrets import decrypt_secret

SEALED = "sealed:"
TEMPLATE_PACKAGE = "seawall.hotline"
TEMPLATE_FOLDER = ("templates", "notices")
DEFAULT_LANGUAGE = "en"


class MailError(Exception):
    """A notice that could not be handed to the SMTP server; the message says why."""


# ---- templates ------------------------------------------------------------------------------------


def _template_text(name: str) -> str | None:
    folder = resources.files(TEMPLATE_PACKAGE).joinpath(*TEMPLATE_FOLDER)
    path = folder.joinpath(f"{name}.txt")
    return path.read_text(encoding="utf-8") if path.is_file() else None


def template_languages(language: str) -> list[str]:
    """The templates tried for a language tag, most specific first: ``pt-br`` → pt-br, pt, en."""
    tag = (language or "").strip().lower().replace("_", "-")
    tried: list[str] = []
    while tag:
        if tag.isascii() and all(c.isalnum() or c == "-" for c in tag):
            tried.append(tag)
        tag = tag.rpartition("-")[0]
    if DEFAULT_LANGUAGE not in tried:
        tried.append(DEFAULT_LANGUAGE)
    return tried


def render(language: str, values: dict[str, str], *, reminder: bool = False) -> tuple[str, str, str]:
    """(subject, body, the template language used) of a notice in ``language``, falling back to English."""
    for tag in template_languages(language):
        text = _template_text(f"{tag}-reminder" if reminder else tag)
        if text is None:
            continue
        filled = Template(text).safe_substitute(values)
        first, _, body = filled.partition("\n")
        if not first.startswith("Subject:"):
            raise MailError(f"the notice template {tag!r} does not start with a Subject: line")
        subject = " ".join(first.removeprefix("Subject:").split())
        return subject, body.lstrip("\n"), tag
    raise MailError("no notice template found (not even the English one)")


# ---- the message ------------------------------------------------------------------------------------


def build_message(
    *, sender: str, recipient: str, subject: str, body: str, document: dict[str, Any], sender_domain: str
) -> tuple[Message, str]:
    """The notice as an e-mail, and its Message-ID."""
    message = MIMEMultipart("report", report_type="feedback-report")
    message_id = make_msgid(domain=sender_domain or None)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(_now())
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message.attach(MIMEText(body, "plain", "utf-8"))
    feedback = MIMEBase("message", "feedback-report")
    feedback.set_payload(f"Feedback-Type: xarf\r\nUser-Agent: Seawall/{__version__}\r\nVersion: 1\r\n")
    message.attach(feedback)
    attachment = MIMEApplication(
        json.dumps(document, indent=2, ensure_ascii=False).encode("utf-8"), "json", name="xarf.json"
    )
    attachment.add_header("Content-Disposition", "attachment", filename="xarf.json")
    message.attach(attachment)
    return message, message_id


def _now() -> Any:
    from seawall.db import utcnow

    return utcnow()


# ---- sending --------------------------------------------------------------------------------------------


def smtp_password(settings: Settings) -> str | None:
    """The SMTP password: from its file (private to the owner), or the sealed setting."""
    if settings.notice_smtp_password_file is not None:
        path = settings.notice_smtp_password_file.expanduser()
        try:
            info = path.stat()
        except OSError as exc:
            raise MailError(f"SEAWALL_NOTICE_SMTP_PASSWORD_FILE {path}: {exc.strerror}") from None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise MailError(f"SEAWALL_NOTICE_SMTP_PASSWORD_FILE {path} may be read by others: chmod 600 it")
        return path.read_text(encoding="utf-8").strip()
    if settings.notice_smtp_password is None:
        return None
    value = settings.notice_smtp_password.get_secret_value().strip()
    if not value.startswith(SEALED):
        raise MailError(
            "SEAWALL_NOTICE_SMTP_PASSWORD holds a sealed value (sealed:…): make one with "
            "`seawall notices seal-password`, or use SEAWALL_NOTICE_SMTP_PASSWORD_FILE"
        )
    try:
        return decrypt_secret(settings, value.removeprefix(SEALED))
    except ValueError as exc:
        raise MailError(f"SEAWALL_NOTICE_SMTP_PASSWORD: {exc}") from None


def seal_password(settings: Settings, password: str) -> str:
    from seawall.secrets import encrypt_secret

    return SEALED + encrypt_secret(settings, password)


def _tls_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cafile=str(settings.notice_smtp_ca_file.expanduser()) if settings.notice_smtp_ca_file else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass(frozen=True)
class Sent:
    message_id: str
    encrypted: bool


def send(settings: Settings, message: Message, sender: str, recipient: str, message_id: str) -> Sent:
    """Hand the message to the configured SMTP server (blocking: the worker's thread, never the event loop)."""
    if not settings.notice_smtp_host:
        raise MailError("no SMTP server: set SEAWALL_NOTICE_SMTP_HOST")
    mode = settings.notice_smtp_starttls
    password = smtp_password(settings) if settings.notice_smtp_user else None
    encrypted = False
    try:
        with smtplib.SMTP(
            settings.notice_smtp_host, settings.notice_smtp_port, timeout=settings.notice_timeout_seconds
        ) as smtp:
            smtp.ehlo()
            offered = smtp.has_extn("starttls")
            if mode == "required" and not offered:
                raise MailError("the SMTP server offers no STARTTLS, and SEAWALL_NOTICE_SMTP_STARTTLS is required")
            if mode != "off" and offered:
                smtp.starttls(context=_tls_context(settings))
                smtp.ehlo()
                encrypted = True
            if settings.notice_smtp_user:
                if not encrypted:
                    raise MailError("refusing to send the SMTP password over a connection without TLS")
                smtp.login(settings.notice_smtp_user, password or "")
            # send_message writes CRLF line ends (sendmail would pass bytes with bare LFs on as they are).
            refused = smtp.send_message(message, sender, [recipient])
            if refused:
                raise MailError(f"the SMTP server refused the recipient: {refused}")
    except MailError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise MailError(f"SMTP login refused: {exc.smtp_code} {_text(exc.smtp_error)}") from None
    except smtplib.SMTPResponseException as exc:
        raise MailError(f"SMTP error: {exc.smtp_code} {_text(exc.smtp_error)}") from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise MailError(f"the SMTP server refused the recipient: {exc.recipients}") from None
    except ssl.SSLError as exc:
        raise MailError(f"STARTTLS failed: {exc.reason or exc}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(f"SMTP: {type(exc).__name__}: {exc}") from None
    return Sent(message_id, encrypted)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
