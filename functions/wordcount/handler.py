"""wordcount: counts the words, lines and characters of a text, and its most frequent words.

The body is raw text, or JSON ``{"text": "..."}`` (with a JSON content type, or starting with ``{``).
The answer is JSON: ``{"words": N, "lines": N, "chars": N, "top": [[word, count], ...]}``.
"""

import json
import re
from collections import Counter

from stoker.handler import Response

TOP = 10
# Letters and digits, keeping "don't" and "well-known" as one word each.
WORD = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*")


def handle(event, context):
    raw = event.body.decode("utf-8", errors="replace")
    content_type = event.headers.get("content-type") or ""
    if "json" in content_type or raw.lstrip().startswith("{"):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            return _bad_request(f"the body is not valid JSON: {exc}")
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            return _bad_request('expected a JSON object {"text": "..."}')
        raw = data["text"]
    words = [w.lower() for w in WORD.findall(raw)]
    return {
        "words": len(words),
        "lines": len(raw.splitlines()),
        "chars": len(raw),
        "top": [[word, count] for word, count in Counter(words).most_common(TOP)],
    }


def _bad_request(message):
    return Response({"error": message}, status=400)
