"""The admin API: a small HTTP/1.1 JSON service on the config's ``admin`` address.

Built from mosnpy's own layers — a :class:`~mosnpy.net.listener.Listener` whose one
network filter speaks HTTP/1.1 through the sans-I/O server codec — so it needs no web
framework.  MOSN's paths, read-only:

* ``GET /`` — the list of endpoints;
* ``GET /api/v1/config_dump`` — the running config as JSON;
* ``GET /api/v1/stats`` — listeners (address, open connections, refused) and clusters
  (requests and retries in flight, hosts, pools);
* ``GET /api/v1/version``;
* ``GET /metrics`` — the same counters in Prometheus' text format, with MOSN's names.

The runtime hands in callables that take snapshots, so this package reads nothing but
what it is given and the proxy layers never know it exists.
"""

from mosnpy.admin.server import AdminServer

__all__ = ["AdminServer"]
