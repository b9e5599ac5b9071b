"""The loop's side of awaitable calls, without a GPU: a completion queue's descriptor wakes an
asyncio loop when another thread reports a call finished, and hands back every token once."""

from __future__ import annotations

import asyncio
import select
import threading

from trtfast import _core


def test_a_push_from_another_thread_wakes_the_loop_with_every_token_once() -> None:
    queue = _core.CompletionQueue()

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        taken: list[int] = []
        done = loop.create_future()

        def on_readable() -> None:
            taken.extend(queue.take())
            if len(taken) >= 1000 and not done.done():
                done.set_result(None)

        loop.add_reader(queue.fd, on_readable)
        try:
            pushers = [
                threading.Thread(target=lambda k=k: [queue.push(k * 500 + i) for i in range(500)])
                for k in range(2)
            ]
            for pusher in pushers:
                pusher.start()
            await asyncio.wait_for(done, timeout=10)
            for pusher in pushers:
                pusher.join()
        finally:
            loop.remove_reader(queue.fd)
        return taken

    taken = asyncio.run(main())
    assert sorted(taken) == list(range(1000))
    assert [t for t in taken if t < 500] == list(range(500))  # each thread's tokens in order


def test_take_leaves_the_descriptor_unreadable() -> None:
    queue = _core.CompletionQueue()
    assert queue.take() == []
    queue.push(7)
    queue.push(8)
    assert select.select([queue.fd], [], [], 1.0)[0] == [queue.fd]
    assert queue.take() == [7, 8]
    assert select.select([queue.fd], [], [], 0.0)[0] == []


def test_ready_says_whether_take_has_tokens() -> None:
    queue = _core.CompletionQueue()
    assert not queue.ready()
    queue.push(3)
    assert queue.ready()
    assert queue.take() == [3]
    assert not queue.ready()


class _StandinSession:
    """What the loop's side asks of a session: its call's token, which another thread pushes
    when the work ends, and _finish_async, which returns the result or raises the error."""

    def __init__(
        self, sync: str, outcome: object, submitted: list[tuple[_core.CompletionQueue, int]]
    ) -> None:
        self._options = {"sync": sync}
        self.outcome = outcome
        self.submitted = submitted

    def _submit_async(self, queue: _core.CompletionQueue, token: int, *args: object) -> None:
        self.submitted.append((queue, token))

    def _finish_async(self) -> object:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def test_calls_finished_together_all_settle_when_one_callback_raises() -> None:
    from trtfast import _awaitable

    async def main() -> tuple[list[object], list[BaseException], bool, int]:
        loop = asyncio.get_running_loop()
        handled: list[BaseException] = []
        loop.set_exception_handler(lambda _, context: handled.append(context["exception"]))
        completions = _awaitable.completions()

        def broken_on_done() -> None:
            raise RuntimeError("on_done failed")

        submitted: list[tuple[_core.CompletionQueue, int]] = []
        calls = [
            (_StandinSession("spin", {"y": 1}, submitted), broken_on_done),
            (_StandinSession("spin", ValueError("bad input"), submitted), None),
            (_StandinSession("blocking", {"y": 3}, submitted), None),
        ]
        futures = [completions.submit(s, None, None, {}, on_done) for s, on_done in calls]
        # All three end together, so that one take() hands them all over.
        pusher = threading.Thread(target=lambda: [q.push(t) for q, t in submitted])
        pusher.start()
        pusher.join()
        results = await asyncio.wait_for(
            asyncio.gather(*futures, return_exceptions=True), timeout=10
        )
        for _ in range(3):  # the poll callback runs once more, sees nothing in flight, and stops
            await asyncio.sleep(0)
        return results, handled, completions.polling, completions.spinning

    results, handled, polling, spinning = asyncio.run(main())
    assert results[0] == {"y": 1} and results[2] == {"y": 3}
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad input"
    assert [str(e) for e in handled] == ["on_done failed"]  # reported to the loop, not lost
    assert not polling and spinning == 0
