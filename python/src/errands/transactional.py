"""Enqueue inside your own PostgreSQL transaction, with the server's ``errands.enqueue()``.

With the PostgreSQL store the errands schema lives in your database, and the SQL function
``errands.enqueue(jsonb)`` stores a job in whatever transaction calls it. So a job can be part of
the same transaction as the rows it is about: it exists if and only if that transaction commits,
and workers are woken (``NOTIFY``) only at commit::

    async with pool.acquire() as conn, conn.transaction():
        user_id = await conn.fetchval("INSERT INTO users (email) VALUES ($1) RETURNING id", email)
        await send_welcome_email.enqueue_in(conn, user_id)

``conn`` may be an asyncpg connection (or pool connection), a psycopg ``AsyncConnection``, or a
SQLAlchemy ``AsyncSession`` / ``AsyncConnection``. The request body is exactly what
``task.enqueue(...)`` sends over HTTP, and the function validates it like the server does; a bad
field raises :class:`~errands.Rejected` naming it. None of these drivers is imported by this
module: install the one you use (``pip install "errands[postgres]"`` brings all three).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, overload

from .errors import Rejected, SerializationError
from .models import JobState
from .spec import JobSpec, body_head, dumps, job_body

if TYPE_CHECKING:
    from .task import Enqueuer

__all__ = ["EnqueueResult", "enqueue_body_in", "enqueue_in", "enqueue_many_in"]

P = ParamSpec("P")

# The SQL function raises this SQLSTATE (invalid_parameter_value) for a bad field, with the
# message `<field>: <reason>` and the field in the error's COLUMN field.
_INVALID_FIELD = "22023"

# Casting through text sends the body as a plain string whatever JSON codec the connection has
# registered for jsonb (an asyncpg json codec would otherwise encode the string a second time).
_ONE = "SELECT id, state, created FROM errands.enqueue(CAST(CAST({} AS text) AS jsonb))"
_MANY = (
    "SELECT r.id, r.state, r.created"
    " FROM errands.enqueue_many(CAST(CAST({} AS text) AS jsonb))"
    " WITH ORDINALITY AS r(id, state, created, n) ORDER BY r.n"
)
_PLACEHOLDERS = {"asyncpg": "$1", "psycopg": "%s", "sqlalchemy": ":job"}


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """What ``errands.enqueue()`` did with one job.

    Attributes:
        id: the job's id; when a unique key matched, the existing job's.
        state: ``scheduled`` or ``queued`` for a new job, the existing job's state otherwise.
        created: false when a unique key matched an existing job (nothing was stored).
    """

    id: str
    state: JobState
    created: bool


@overload
async def enqueue_in(
    conn: Any, task: Enqueuer[P, Any], /, *args: P.args, **kwargs: P.kwargs
) -> EnqueueResult: ...  # pragma: no cover


@overload
async def enqueue_in(
    conn: Any, task: str, /, *args: Any, **kwargs: Any
) -> EnqueueResult: ...  # pragma: no cover


async def enqueue_in(
    conn: Any, task: Enqueuer[..., Any] | str, /, *args: Any, **kwargs: Any
) -> EnqueueResult:
    """Enqueue one job in ``conn``'s current transaction: committed with it or not at all.

    ``task`` is a task, an enqueuer with options (``task.options(delay=60)``,
    ``app.kind("name")``) or a kind by name (with the server's defaults). The arguments are the
    task's, as for ``task.enqueue(...)``, and the body is the one it sends over HTTP.

    ``conn`` is an asyncpg connection, a psycopg ``AsyncConnection`` or a SQLAlchemy
    ``AsyncSession``/``AsyncConnection`` whose database has the errands schema. Outside an
    explicit transaction the job is committed at once (asyncpg) or with the connection's or
    session's next commit (psycopg, SQLAlchemy), as any other statement would be.

    Raises:
        SerializationError: an argument is not JSON-serialisable (nothing is sent).
        Rejected: the database refused a field; ``.field`` names it (``delay``, ``kind``, ...)
            and ``.message`` says why. As after any failed statement, the transaction is
            aborted: roll it back (or use a savepoint to carry on).
        TypeError: ``conn`` is not one of the supported async connections.
    """
    if isinstance(task, str):
        body = job_body(task, body_head(JobSpec(task)), args, kwargs)
    else:
        body = task._body(args, kwargs)
    return await enqueue_body_in(conn, body)


async def enqueue_many_in(
    conn: Any, jobs: Iterable[JobSpec | Mapping[str, Any]]
) -> list[EnqueueResult]:
    """Enqueue many jobs in ``conn``'s current transaction, in order, all or none.

    The items are those of :meth:`App.enqueue_many`: ``task.spec(...)``,
    ``task.options(...).spec(...)`` or raw request bodies. Results come back in input order.

    Raises:
        SerializationError: a job is not JSON-serialisable (nothing is sent).
        Rejected: a bad field, named ``jobs[i].field`` (0-based); nothing is stored.
        TypeError: ``conn`` is not one of the supported async connections.
    """
    bodies = [job.to_body() if isinstance(job, JobSpec) else dict(job) for job in jobs]
    if not bodies:
        return []
    try:
        text = dumps(bodies)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"batch is not JSON-serialisable: {exc}") from exc
    return await _run(conn, _MANY, text)


async def enqueue_body_in(conn: Any, body: str) -> EnqueueResult:
    """Enqueue one serialised ``POST /v1/jobs`` body in ``conn``'s transaction."""
    (result,) = await _run(conn, _ONE, body)
    return result


async def _run(conn: Any, query: str, body: str) -> list[EnqueueResult]:
    driver = _driver(conn)
    sql = query.format(_PLACEHOLDERS[driver])
    try:
        if driver == "asyncpg":
            rows: Iterable[Any] = await conn.fetch(sql, body)
        elif driver == "psycopg":
            from psycopg.rows import tuple_row

            # Our own cursor with tuple rows, whatever row factory the connection has.
            async with conn.cursor(row_factory=tuple_row) as cursor:
                await cursor.execute(sql, (body,))
                rows = await cursor.fetchall()
        else:
            from sqlalchemy import text

            rows = (await conn.execute(text(sql), {"job": body})).all()
    except Exception as exc:
        rejected = _rejected(exc)
        if rejected is None:
            raise
        raise rejected from exc
    return [EnqueueResult(str(row[0]), JobState(row[1]), bool(row[2])) for row in rows]


def _driver(conn: Any) -> str:
    """Which driver ``conn`` belongs to, by its classes' modules (nothing is imported)."""
    classes = type(conn).__mro__
    names = {cls.__name__ for cls in classes}
    for cls in classes:
        package = cls.__module__.partition(".")[0]
        if package == "asyncpg":
            if cls.__name__ == "Pool":
                raise TypeError(
                    "an asyncpg Pool runs each statement on a connection of its choosing: "
                    "pass the connection of your transaction (async with pool.acquire() as conn)"
                )
            return "asyncpg"
        if package == "psycopg":
            if "AsyncConnection" in names:
                return "psycopg"
            raise TypeError(
                f"{type(conn).__name__} is a synchronous psycopg connection: "
                "pass a psycopg.AsyncConnection"
            )
        if package == "sqlalchemy":
            if names & {"AsyncSession", "AsyncConnection", "async_scoped_session"}:
                return "sqlalchemy"
            raise TypeError(
                f"{type(conn).__name__} is not a SQLAlchemy AsyncSession or AsyncConnection "
                "(pass the session or connection whose transaction the job belongs to)"
            )
    raise TypeError(
        f"cannot enqueue in a {type(conn).__module__}.{type(conn).__name__}: pass an asyncpg "
        "connection, a psycopg AsyncConnection or a SQLAlchemy AsyncSession/AsyncConnection"
    )


def _rejected(exc: BaseException) -> Rejected | None:
    """The SDK's error for the database's "bad field" error anywhere in ``exc``'s chain.

    asyncpg raises it itself (``sqlstate``, ``column_name``), psycopg too (``sqlstate``,
    ``diag.column_name``), SQLAlchemy wraps either (``.orig``, ``__cause__``).
    """
    seen: set[int] = set()
    pending: list[Any] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if getattr(error, "sqlstate", None) == _INVALID_FIELD:
            diag = getattr(error, "diag", None)
            field = getattr(error, "column_name", None) or getattr(diag, "column_name", None)
            message = getattr(diag, "message_primary", None) or getattr(error, "message", None)
            prefix = f"{field}: "
            if isinstance(field, str) and isinstance(message, str) and message.startswith(prefix):
                return Rejected(400, "invalid_field", message[len(prefix) :], field)
        pending += [getattr(error, "orig", None), error.__cause__]
    return None
