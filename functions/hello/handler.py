"""hello: the smallest function. Greets the request body, or says hello from stoker."""


def handle(event, context):
    name = event.body.decode("utf-8", errors="replace").strip()
    if not name:
        return "Hello from stoker!\n"
    return f"Hello, {name}!\n"
