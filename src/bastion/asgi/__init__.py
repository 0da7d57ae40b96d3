"""Plain ASGI middleware (Starlette style, never BaseHTTPMiddleware).

What a middleware learns is passed on in ``scope``: ``scope["bastion"]`` holds the
request's :class:`bastion.asgi.sessions.SessionState`.
"""
