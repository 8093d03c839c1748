"""``X-Callback-Url``: POST a finished async call's answer to the URL the caller gave, OpenFaaS-style."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

from events.messages import Result

ATTEMPTS = 3


def callback_headers(call_id: str, result: Result) -> dict[str, str]:
    """The headers of a callback (and of ``GET /system/async-result``) besides the function's own."""
    return {
        "X-Call-Id": call_id,
        "X-Function-Status": str(result.status),
        "X-Duration-Seconds": f"{result.duration_s:.6f}",
        "X-Function-Name": result.function,
    }


def _post(url: str, call_id: str, result: Result, timeout: float) -> int:
    headers = {"Content-Type": result.header("content-type", "application/octet-stream")}
    headers.update(callback_headers(call_id, result))
    request = urllib.request.Request(url, data=result.body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def post_callback(url: str, call_id: str, result: Result, timeout: float = 10.0) -> str | None:
    """Deliver the result; retried on errors and 5xx a few times. Returns None, or why it could not be delivered
    (the result stays available by call id either way)."""
    problem = ""
    for attempt in range(ATTEMPTS):
        try:
            status = await asyncio.to_thread(_post, url, call_id, result, timeout)
        except (OSError, ValueError) as exc:
            problem = str(exc)
        else:
            if status < 500:
                return None if status < 400 else f"callback {url} answered {status}"
            problem = f"answered {status}"
        await asyncio.sleep(0.5 * 2**attempt)
    return f"callback {url} failed after {ATTEMPTS} attempts: {problem}"
