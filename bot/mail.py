"""The SMTP adapter (stdlib ``smtplib``): hands an invoice mail to the server ``SMTP_URL`` names.

``SMTP_URL`` forms:

- ``smtp://[user:password@]host[:25]`` — plain SMTP, upgraded with STARTTLS when the server offers it;
- ``smtp+starttls://[user:password@]host[:587]`` — STARTTLS required (refused if the server lacks it);
- ``smtps://[user:password@]host[:465]`` — TLS from the first byte.

Certificates are verified against the system's CAs, or ``SMTP_CA_FILE`` for a private CA. Server answers
map to :class:`bot.workflows.dispatch.SendFailed`: 4xx and a lost connection are temporary (the
workflow retries with backoff), 5xx are permanent.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from billing.errors import Invalid
from bot.workflows.dispatch import SendFailed

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


@dataclass(frozen=True)
class SmtpSender:
    """One SMTP server; ``send`` opens a connection per mail, ``connection()`` keeps one for many."""

    scheme: str
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    ca_file: str | None = None
    timeout: float = 30.0

    @classmethod
    def from_url(cls, url: str, *, ca_file: str | None = None, timeout: float = 30.0) -> SmtpSender:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            raise Invalid(f"SMTP_URL: unknown scheme {parts.scheme!r} (smtp, smtp+starttls or smtps)")
        if not parts.hostname:
            raise Invalid("SMTP_URL: no host")
        return cls(parts.scheme, parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme],
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None, ca_file or None, timeout)

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def _connect(self) -> smtplib.SMTP:
        if self.scheme == "smtps":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._tls())
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        smtp.ehlo()
        if self.scheme == "smtp+starttls" or smtp.has_extn("starttls"):
            smtp.starttls(context=self._tls())  # raises SMTPNotSupportedError if required and not offered
            smtp.ehlo()
        return smtp

    def open(self) -> smtplib.SMTP:
        """A connection, logged in when the URL names a user."""
        smtp = self._connect()
        if self.user:
            smtp.login(self.user, self.password or "")
        return smtp

    def send(self, msg: EmailMessage, *, sender: str, recipients: list[str]) -> dict[str, str]:
        """Send ``msg``; the recipients the server refused while taking it for others (address → answer)."""
        def once() -> dict[str, str]:
            with self.open() as smtp:
                return _refused(smtp.send_message(msg, from_addr=sender, to_addrs=recipients))

        return _answered(once)

    @contextmanager
    def connection(self) -> Iterator[SmtpConnection]:
        """One connection for many mails (``dispatch_many``), opened at the first mail, closed after."""
        conn = SmtpConnection(self)
        try:
            yield conn
        finally:
            conn.close()


class SmtpConnection:
    """Sends over one SMTP connection (a month's invoices over one session, not a handshake per mail):
    the same answers as :meth:`SmtpSender.send`. After a lost connection or a refusal that may have left
    the session in doubt, the next mail opens a new one."""

    def __init__(self, sender: SmtpSender) -> None:
        self._sender = sender
        self._smtp: smtplib.SMTP | None = None

    def send(self, msg: EmailMessage, *, sender: str, recipients: list[str]) -> dict[str, str]:
        def once() -> dict[str, str]:
            if self._smtp is None:
                self._smtp = self._sender.open()
            try:
                return _refused(self._smtp.send_message(msg, from_addr=sender, to_addrs=recipients))
            except smtplib.SMTPRecipientsRefused:
                raise  # smtplib reset the session; the connection goes on
            except Exception:
                self.close(quit_=False)
                raise

        return _answered(once)

    def close(self, *, quit_: bool = True) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            if quit_:
                smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()


def _refused(refused: dict[str, tuple[int, bytes]] | None) -> dict[str, str]:
    return {str(a): f"{int(c)} {_text(m)}" for a, (c, m) in (refused or {}).items()}


def _answered(send: Callable[[], dict[str, str]]) -> dict[str, str]:
    """``send()``'s refused recipients, or :class:`SendFailed` naming the server's answer."""
    try:
        return send()
    except smtplib.SMTPRecipientsRefused as e:  # every recipient refused: the worst answer decides
        answers = {str(a): (int(c), _text(m)) for a, (c, m) in e.recipients.items()}
        code = max(c for c, _ in answers.values())
        temporary = all(400 <= c < 500 for c, _ in answers.values())
        detail = "; ".join(f"{a}: {c} {m}" for a, (c, m) in answers.items())
        raise SendFailed(f"{code} recipients refused ({detail})", temporary=temporary, smtp_code=code,
                         refused={a: f"{c} {m}" for a, (c, m) in answers.items()}) from e
    except smtplib.SMTPResponseException as e:  # sender refused, data refused, auth failed, …
        code = int(e.smtp_code)
        raise SendFailed(f"{code} {_text(e.smtp_error)}", temporary=400 <= code < 500, smtp_code=code) from e
    except smtplib.SMTPNotSupportedError as e:
        raise SendFailed(f"the mail server does not offer STARTTLS ({e})", temporary=False) from e
    except (smtplib.SMTPException, OSError) as e:  # connection refused or lost, TLS handshake, timeout
        raise SendFailed(f"{type(e).__name__}: {e}", temporary=True) from e


def _text(m: bytes | str) -> str:
    return m.decode("utf-8", "replace") if isinstance(m, bytes) else str(m)


def sender_from_settings() -> SmtpSender | None:
    """The configured sender; None when ``SMTP_URL`` is unset (invoices are not mailed)."""
    from storage.settings import get_settings

    st = get_settings()
    if not st.smtp_url:
        return None
    return SmtpSender.from_url(st.smtp_url, ca_file=st.smtp_ca_file)
