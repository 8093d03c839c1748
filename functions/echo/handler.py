"""echo: answers with what it received (method, path, query, headers, body) as JSON.

Handy to see what the gateway passes through, like OpenFaaS's ``env`` function.
"""


def handle(event, context):
    # dict() so the answer is the same whether the platform hands over a plain dict or a multi-dict.
    return {
        "method": event.method,
        "path": event.path,
        "query": dict(event.query),
        "headers": dict(event.headers),
        "body": event.body.decode("utf-8", errors="replace"),
    }
