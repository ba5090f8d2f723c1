"""The admin API: a small HTTP/1.1 JSON service on the config's ``admin`` address.

Built from mosnpy's own layers — a :class:`~mosnpy.net.listener.Listener` whose one
network filter speaks HTTP/1.1 through the sans-I/O server codec — so it needs no web
framework.  MOSN's paths (see :class:`AdminServer` for the list): ``config_dump`` in
MOSN's JSON, ``stats`` / ``stats_glob``, ``get_loglevel`` / ``update_loglevel``,
``states``, ``version``, ``/metrics`` in Prometheus' format, and mosnpy's own
``POST /api/v1/reload``.

The runtime hands in an :class:`AdminBackend` (the server itself, or the supervisor of
``--workers``), so this package reads nothing but what it is given and the proxy layers
never know it exists.
"""

from mosnpy.admin.server import AdminBackend, AdminServer, ReloadRefused

__all__ = ["AdminBackend", "AdminServer", "ReloadRefused"]
