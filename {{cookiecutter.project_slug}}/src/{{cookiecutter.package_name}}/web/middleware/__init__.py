"""The web edge: pure-ASGI layers every request passes, outermost first in web/app.py."""
