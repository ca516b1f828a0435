"""RS256 signing spread over processes.

Two RSA signatures (access token, ID token) are most of a token answer's cost, and the
cryptography library holds the GIL while it signs, so threads cannot use a second core. The token
endpoint builds each JWT's claims in the event loop (where all state lives) and hands the signing,
a pure function of claims and key, to worker processes. They are forked when the app is created,
before the event loop, its threads and its sockets exist, and inherit the parsed key. With
`processes=0`, signing happens inline.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import jwt

_forked_key: Any = None


@dataclass(frozen=True)
class UnsignedJwt:
    """Claims and header of a JWT to be signed before the answer leaves."""

    claims: dict[str, Any]
    headers: dict[str, Any]


def _sign_with(key: Any, items: list[UnsignedJwt]) -> list[str]:
    return [jwt.encode(item.claims, key, algorithm="RS256", headers=item.headers) for item in items]


def _sign_in_worker(items: list[UnsignedJwt]) -> list[str]:
    return _sign_with(_forked_key, items)


def _ready() -> bool:
    return _forked_key is not None


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGTERM to this worker when the sandbox process dies, even by
    SIGKILL, so no signing process outlives its sandbox."""
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class Signer:
    def __init__(self, private_key: Any, *, processes: int) -> None:
        global _forked_key
        self._key = private_key
        self._pool: ProcessPoolExecutor | None = None
        if processes > 0:
            _forked_key = private_key
            self._pool = ProcessPoolExecutor(
                processes, mp_context=multiprocessing.get_context("fork"), initializer=_die_with_parent
            )
            # Fork every worker now: the pool would otherwise fork lazily, later, from a process that
            # by then runs an event loop and threads.
            warmups = [self._pool.submit(_ready) for _ in range(processes)]
            if not all(future.result(timeout=30) for future in warmups):
                raise RuntimeError("a signing process started without the key")

    async def sign_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """Replace every UnsignedJwt value of a token answer by its compact serialization."""
        names = [name for name, value in body.items() if isinstance(value, UnsignedJwt)]
        if not names:
            return body
        items = [body[name] for name in names]
        if self._pool is None:
            signed = _sign_with(self._key, items)
        else:
            signed = await asyncio.get_running_loop().run_in_executor(self._pool, _sign_in_worker, items)
        return {**body, **dict(zip(names, signed, strict=True))}

    def close(self) -> None:
        if self._pool is not None:
            # wait=True: the workers are idle at shutdown and exit at once; without waiting, the
            # process could end before the pool has told them to.
            self._pool.shutdown(wait=True, cancel_futures=True)
