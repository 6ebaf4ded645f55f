import asyncio
import threading

import pytest

from edgewatch.daemon.inference_queue import InferenceQueue, QueueFull


def test_full_queue_refuses_at_once_with_retry_after() -> None:
    async def scenario() -> None:
        q = InferenceQueue(workers=1, queue_size=2)
        release = threading.Event()
        running = [asyncio.create_task(q.run(release.wait, 5)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull) as full:
            await q.run(lambda: None)
        assert full.value.retry_after >= 1
        release.set()
        assert await asyncio.gather(*running) == [True, True]
        assert await q.run(lambda: 42) == 42  # serving again once drained
        q.close()

    asyncio.run(scenario())
