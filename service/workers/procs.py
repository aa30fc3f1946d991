"""Child processes with a one-way pipe each way: start, watch (a reader thread), stop. Used for the
worker processes (supervisor.py) and their encoder processes (encoders.py) alike.

Why *spawn*: CUDA cannot survive a fork, and a fresh interpreter inherits no locks held by the
parent's threads. Why a pipe per direction per child rather than one shared ``multiprocessing.Queue``:
a child SIGKILLed while holding a shared queue's lock would wedge every sibling, and per-child pipes
tell the parent exactly which jobs a dead child took with it. The parent closes the child's pipe
ends right after the start, so a dead child shows up as EOF on ``receive`` and the child sees EOF
(and exits) when its parent dies.

Children never see the API's secrets: spawn starts them with the parent's environment, so
``ChildProcess`` removes ``SECRET_ENV`` keys (the JWT settings, the quota store URL) from it for the
moment of the start. (Their settings objects come without them too: service/workers/supervisor.py.)
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

_SPAWN = mp.get_context("spawn")
SECRET_ENV = re.compile(r"FACE3D_(JWT_.*|QUOTA_REDIS_URL)", re.IGNORECASE)
"""Environment variables a child process never inherits (it verifies no tokens, charges no quota)."""
_ENV_LOCK = threading.Lock()


@contextmanager
def _without_secrets() -> Iterator[None]:
    """The environment minus ``SECRET_ENV`` while a child is started (it copies the environment at
    exec), restored afterwards. Serialised: two starts must not restore each other's view."""
    with _ENV_LOCK:
        saved = {key: os.environ.pop(key) for key in list(os.environ) if SECRET_ENV.fullmatch(key)}
        try:
            yield
        finally:
            os.environ.update(saved)


class ChildProcess:
    """One spawned child; ``target(*args, inbox, outbox)`` runs in it with the child's pipe ends."""

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...], name: str, daemon: bool) -> None:
        child_inbox, self._to_child = _SPAWN.Pipe(duplex=False)
        self._from_child, child_outbox = _SPAWN.Pipe(duplex=False)
        self.name = name
        self.process = _SPAWN.Process(
            target=target, args=(*args, child_inbox, child_outbox), name=name, daemon=daemon
        )
        with _without_secrets():
            self.process.start()
        child_inbox.close()
        child_outbox.close()
        self._send_lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    def is_alive(self) -> bool:
        return self.process.is_alive()

    def send(self, message: object) -> None:
        """Pickle ``message`` into the child's pipe (thread-safe); OSError when the child is gone."""
        with self._send_lock:
            self._to_child.send(message)

    def watch(self, on_message: Callable[[object], None], on_eof: Callable[[], None]) -> threading.Thread:
        """Start a daemon thread that hands every message to ``on_message`` and calls ``on_eof`` once
        the child's pipe closes (it exited or died)."""

        def read() -> None:
            try:
                while True:
                    on_message(self._from_child.recv())
            except (EOFError, OSError):
                pass
            finally:
                self._from_child.close()
            on_eof()

        thread = threading.Thread(target=read, name=f"{self.name}-reader", daemon=True)
        thread.start()
        return thread

    def close_input(self) -> None:
        """Close the parent's writing end: the child reads EOF (its signal to stop) after the queue."""
        with self._send_lock:
            self._to_child.close()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)


def join_all(children: Iterable[ChildProcess], grace_s: float) -> None:
    """Wait up to ``grace_s`` in total for every child to exit, then kill the ones still running."""
    children = list(children)
    end = time.monotonic() + grace_s
    for child in children:
        child.process.join(max(0.0, end - time.monotonic()))
    for child in children:
        if child.is_alive():
            child.kill()
