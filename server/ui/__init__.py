"""The operator dashboard at ``/ui`` on the HTTP port (server-rendered HTML, SVG charts).

``Dashboard(...).routes()`` are shim routes (``server.http_shim.app.Route``) mounted by the
composition root; ``pages.py`` has the pages, ``session.py`` the login and CSRF tokens.
"""

from server.ui.pages import Dashboard

__all__ = ["Dashboard"]
