"""asyncpg's errors that mean the session is gone, not that the SQL was wrong."""

from __future__ import annotations

import asyncpg

__all__ = ["CLIENT_ERRORS", "LOST"]

# Errors of the client or the transport, not of the SQL: the session is unusable.
CLIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)
LOST: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.AdminShutdownError,  # 57P01: the server is shutting down or the session was killed
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.CannotConnectNowError,  # 57P03: the server is starting
)
