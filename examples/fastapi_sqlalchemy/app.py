"""Sign-ups with a welcome email: the row and its job commit together, or not at all.

One request handler inserts a row into `signups` and enqueues `send_welcome_email` in the same
SQLAlchemy transaction, with `errands.enqueue_in`: the job is stored by the database function
`errands.enqueue()`, in the application's own database, so a rolled-back sign-up never sends
an email and a committed one always does.

Web app:  uvicorn app:api --port 8000
Worker:   errands-worker app:tasks --concurrency 4
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import DateTime, String, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import errands

# The application's database, which the errands server (PostgreSQL store) also uses.
DATABASE_URL = os.environ.get(
    "DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/errands_example"
)

engine = create_async_engine(DATABASE_URL)
Session = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Signup(Base):
    __tablename__ = "signups"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# -- the worker side ------------------------------------------------------------------------------

# ERRANDS_URL / ERRANDS_TOKEN from the environment (default http://127.0.0.1:7733). The web app
# never talks to the server: it enqueues through the database.
tasks = errands.App()


@tasks.task(queue="email", max_attempts=10, timeout=30)
async def send_welcome_email(ctx: errands.Context, signup_id: int, email: str) -> dict[str, Any]:
    """Pretend to send the welcome email (a real one would call the mail provider here)."""
    await ctx.progress(50, f"sending to {email}")
    return {"signup_id": signup_id, "sent_to": email, "attempt": ctx.attempt}


# -- the web side ---------------------------------------------------------------------------------


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    # The app's own table; the errands schema comes from `errands migrate`.
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield
    await engine.dispose()


api = FastAPI(title="errands FastAPI + SQLAlchemy example", lifespan=lifespan)


async def session() -> AsyncIterator[AsyncSession]:
    async with Session() as s:
        yield s


# The request's session; each handler opens its transaction on it.
DbSession = Annotated[AsyncSession, Depends(session)]


class SignupIn(BaseModel):
    email: str


@api.post("/signups", status_code=201)
async def sign_up(
    body: SignupIn, db: DbSession, fail_after_enqueue: bool = False
) -> dict[str, Any]:
    """Store the sign-up and enqueue its welcome email, in one transaction.

    ``?fail_after_enqueue=true`` fails the request after both, to show that then neither is
    kept: the transaction rolls back, and with it the job and the wake-up of the workers.
    """
    try:
        async with db.begin():
            signup = Signup(email=body.email)
            db.add(signup)
            await db.flush()  # INSERT now, to get the id
            job = await send_welcome_email.enqueue_in(db, signup.id, signup.email)
            if fail_after_enqueue:
                raise HTTPException(500, "failed on purpose after the enqueue: nothing is kept")
    except IntegrityError as exc:
        raise HTTPException(409, f"{body.email} has already signed up") from exc
    return {"id": signup.id, "email": signup.email, "job_id": job.id}


@api.get("/signups/{signup_id}")
async def get_signup(signup_id: int, db: DbSession) -> dict[str, Any]:
    signup = await db.scalar(select(Signup).where(Signup.id == signup_id))
    if signup is None:
        raise HTTPException(404, f"no sign-up {signup_id}")
    return {"id": signup.id, "email": signup.email, "created_at": signup.created_at.isoformat()}
