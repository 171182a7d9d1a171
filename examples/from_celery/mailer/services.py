"""Stand-ins for what a real app calls: an SMTP client and a report renderer.

They keep the example runnable without a mail server; the tests steer them (a flaky SMTP
connection, a slow report).
"""

from __future__ import annotations

import asyncio


class InvalidAddress(ValueError):
    """The address cannot receive mail: retrying will not help."""


class RateLimited(Exception):
    """The mail provider asks us to come back later."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited, retry after {retry_after} s")
        self.retry_after = retry_after


class Smtp:
    """Records what it sends. ``fail_next`` errors are raised by the next sends, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.fail_next: list[Exception] = []
        self.closed = False

    def send(self, to: str, subject: str) -> str:
        if "@" not in to:
            raise InvalidAddress(to)
        if self.fail_next:
            raise self.fail_next.pop(0)
        self.sent.append((to, subject))
        return f"<{len(self.sent)}@mailer.example>"

    def close(self) -> None:
        self.closed = True


#: Seconds a report takes to render (a test makes it slow to hit the timeout).
RENDER_SECONDS = 0.01
#: Months whose partial report was discarded after a timeout or a cancel.
DISCARDED: list[str] = []


async def render_report(month: str) -> str:
    await asyncio.sleep(RENDER_SECONDS)
    return f"reports/{month}.pdf"


async def discard_partial_report(month: str) -> None:
    DISCARDED.append(month)
