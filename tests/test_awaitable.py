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
