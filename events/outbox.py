"""The callback outbox: delivering ``X-Callback-Url`` callbacks durably.

A finished async call that asked for a callback gets an entry on the stream ``stoker:callbacks`` in the same
transaction as its result (:meth:`events.queue.Queue.finish`). Every platform process reads that stream through one
consumer group; each entry is POSTed once by :func:`events.callbacks.post_callback` (which retries errors and 5xx a
few times), then acknowledged and deleted. When it gives up, the reason is noted on the call's record (shown by
``GET /system/async-result``) and logged, and the entry is deleted too. An entry whose process died mid-delivery stays
pending and is reclaimed by any running process after the claim idle time: callbacks are delivered at least once,
across restarts of the platform and of Redis.
"""

from __future__ import annotations

import logging

from events.callbacks import DEFAULT_POLICY, post_callback
from events.consumer import StreamConsumer
from events.messages import Callback
from events.queue import CALLBACK_GROUP, CALLBACK_STREAM, Message, Queue
from stoker.callback_policy import CallbackPolicy

logger = logging.getLogger(__name__)


class CallbackOutbox(StreamConsumer):
    def __init__(
        self,
        queue: Queue,
        consumer: str,
        concurrency: int,
        claim_idle_s: float,
        block_s: float,
        policy: CallbackPolicy = DEFAULT_POLICY,
    ) -> None:
        super().__init__(
            queue, "callbacks", [CALLBACK_STREAM], CALLBACK_GROUP, consumer, concurrency, claim_idle_s, block_s
        )
        self.policy = policy  # checked again at delivery: a name may resolve elsewhere than when the call was taken

    async def handle(self, msg: Message) -> None:
        try:
            callback = Callback.decode(msg.fields.get(b"m", b""))
        except ValueError as exc:  # only stoker writes here; a foreign entry is dropped, not retried forever
            logger.warning("callback outbox: dropping entry %s: %s", msg.id, exc)
            await self.queue.ack(msg.stream, self.group, [msg.id], delete=True)
            return
        problem = await post_callback(callback.url, callback.call_id, callback.result, policy=self.policy)
        if problem:
            logger.warning("%s call %s: %s", callback.result.function, callback.call_id, problem)
            await self.queue.note_callback(callback.call_id, problem)
        await self.queue.ack(msg.stream, self.group, [msg.id], delete=True)
