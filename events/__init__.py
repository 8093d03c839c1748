"""Async invocations, queue triggers and timer triggers: queues (Redis Streams or embedded SQLite), the worker that
turns messages into function calls, cron, callbacks and stored results. See docs/queue.md."""
