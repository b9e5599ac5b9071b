"""Awaitable calls: each event loop watches one completion queue's file descriptor.

A call is read on the loop's thread (as a plain call reads it), then its GPU work is queued and
waited for on its session's C++ call thread, which holds no Python lock; that thread pushes the
call's token to the loop's queue, whose descriptor wakes the loop, and the loop's reader turns
the finished calls into results.

Waking a sleeping loop costs tens of microseconds, so while a call of a ``sync="spin"`` session
is in flight the loop polls the queue instead (a callback that runs once per loop iteration,
between other tasks' work), as a plain call's thread spins on the GPU's event. It polls for at
most POLL_WINDOW_S after the latest such call was submitted, then sleeps until the descriptor
wakes it: a longer call pays the wake-up (56-117 us on an H200 host, a few percent of 2 ms)
rather than a loop that never sleeps under steady load.
"""

from __future__ import annotations

import asyncio
import itertools
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from . import _core

_tokens = itertools.count(1)
POLL_WINDOW_S = 0.002


class _LoopCompletions:
    """One event loop's completion queue and the calls it waits for."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.queue = _core.CompletionQueue()
        self.loop = loop
        self.calls: dict[
            int, tuple[Any, asyncio.Future[dict[str, Any]], Callable[[], None] | None, bool]
        ] = {}
        self.spinning = 0  # calls in flight whose session waits by spinning
        self.polling = False
        self.poll_until = 0.0
        loop.add_reader(self.queue.fd, self._finish)

    def submit(
        self,
        session: Any,
        inputs: Mapping[str, Any] | None,
        out: Any,
        named: dict[str, Any],
        on_done: Callable[[], None] | None,
    ) -> asyncio.Future[dict[str, Any]]:
        token = next(_tokens)
        args = () if inputs is None else (inputs,)
        if out is not None:
            named = {**named, "out": out}
        session._submit_async(self.queue, token, *args, **named)
        done = self.loop.create_future()
        spin = session._options["sync"] == "spin"
        self.calls[token] = (session, done, on_done, spin)
        if spin:
            self.spinning += 1
            self.poll_until = self.loop.time() + POLL_WINDOW_S
            if not self.polling:
                self.polling = True
                self.loop.call_soon(self._poll)
        return done

    def _poll(self) -> None:
        try:
            if self.queue.ready():
                self._finish()
        finally:  # a callback that raised must not stop the polling of the calls still in flight
            if self.spinning and self.loop.time() < self.poll_until:
                self.loop.call_soon(self._poll)
            else:
                self.polling = False

    def _finish(self) -> None:
        # Every taken token is settled and its on_done run, whatever raises on the way: a token
        # dropped here would leave its task waiting forever and its session busy.
        raised: BaseException | None = None
        for token in self.queue.take():
            session, done, on_done, spin = self.calls.pop(token)
            self.spinning -= spin
            try:
                result = session._finish_async()
            except BaseException as error:
                if not done.cancelled():
                    done.set_exception(error)
                if not isinstance(error, Exception):
                    raised = raised or error  # Ctrl-C and exits reach the loop too
            else:
                if not done.cancelled():
                    done.set_result(result)
            if on_done is not None:
                try:
                    on_done()
                except BaseException as error:
                    raised = raised or error
        if raised is not None:
            raise raised


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopCompletions] = (
    weakref.WeakKeyDictionary()
)


def completions() -> _LoopCompletions:
    """The running loop's completions, set up on its first awaitable call."""
    loop = asyncio.get_running_loop()
    found = _by_loop.get(loop)
    if found is None or found.loop.is_closed():
        found = _by_loop[loop] = _LoopCompletions(loop)
    return found


async def wait_for(done: asyncio.Future[dict[str, Any]]) -> dict[str, Any]:
    """Awaits a call. Cancelling the awaiting task leaves the call to finish on the GPU (the
    session stays busy, holding its buffers, until then); its outcome is then dropped."""
    if not done.done():
        done.add_done_callback(_mark_retrieved)
    return await asyncio.shield(done)


def _mark_retrieved(done: asyncio.Future[dict[str, Any]]) -> None:
    # A call whose task was cancelled has nobody to read its error: reading it here keeps
    # asyncio from reporting it as never retrieved.
    if not done.cancelled():
        done.exception()
