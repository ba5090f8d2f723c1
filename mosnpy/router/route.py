"""One compiled route: its match, and what to do with a request that matched it.

A :class:`Route` is what :meth:`RouteTable.match` hands the proxy.  Everything the
proxy asks of it per request is precomputed when the table is built: the cluster (or
the cumulative weights to pick one), the flattened header edits, the rewrite rule.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Sequence
from typing import Final

from mosnpy.config.models import (
    DirectResponseConfig,
    HeaderValueConfig,
    RedirectConfig,
    RetryPolicyConfig,
    RouteActionConfig,
    RouteConfig,
    VirtualHostConfig,
)
from mosnpy.protocol.headers import HeaderMap
from mosnpy.router.matchers import HeaderMatcher, PathKind, PathMatcher, RouterConfigError
from mosnpy.router.mutation import HeaderMutation

__all__ = ["REDIRECT_CODES", "Route"]

#: The redirect statuses MOSN accepts (anything else is a config error).
REDIRECT_CODES: Final = frozenset({301, 302, 303, 307, 308})

# Used when the caller passes no RNG; one instance, never reseeded per request.
_default_random: Final = random.Random()
_NO_ACTION: Final = RouteActionConfig()


class Route:
    """A matched route's action.  Attributes are read-only by convention.

    Exactly what the proxy needs in MatchRoute / ChooseHost:

    * :attr:`direct_response` or :attr:`redirect` (checked first, MOSN's ChooseHost
      order), else a cluster from :meth:`choose_cluster`;
    * :attr:`timeout` (seconds, 0 = the proxy's default) and :attr:`retry_policy`;
    * :attr:`upstream_protocol` ("" = not set by the route);
    * :meth:`apply_request_headers`, :meth:`apply_response_headers`,
      :meth:`rewrite_path` and :attr:`host_rewrite` to finalise the request.
    """

    __slots__ = (
        "_cum_weights",
        "_request_mutation",
        "_response_mutation",
        "_rewrite_whole_path",
        "_total_weight",
        "cluster_name",
        "direct_response",
        "edits_request",
        "edits_response",
        "header_matchers",
        "host_rewrite",
        "path_matcher",
        "prefix_rewrite",
        "redirect",
        "retry_policy",
        "timeout",
        "upstream_protocol",
        "virtual_host_name",
        "weighted_clusters",
    )

    def __init__(
        self,
        path_matcher: PathMatcher,
        header_matchers: Sequence[HeaderMatcher] = (),
        *,
        cluster_name: str = "",
        weighted_clusters: Sequence[tuple[str, int]] = (),
        timeout: float = 0.0,
        retry_policy: RetryPolicyConfig | None = None,
        direct_response: DirectResponseConfig | None = None,
        redirect: RedirectConfig | None = None,
        upstream_protocol: str = "",
        prefix_rewrite: str = "",
        host_rewrite: str = "",
        request_mutation: HeaderMutation | None = None,
        response_mutation: HeaderMutation | None = None,
        virtual_host_name: str = "",
    ) -> None:
        self.path_matcher = path_matcher
        self.header_matchers: tuple[HeaderMatcher, ...] = tuple(header_matchers)
        #: The configured cluster ("" for weighted, direct-response and redirect routes).
        self.cluster_name = cluster_name
        #: ``(cluster, weight)`` pairs in config order; empty for a plain route.
        self.weighted_clusters: tuple[tuple[str, int], ...] = tuple(weighted_clusters)
        self.timeout = timeout
        self.retry_policy = retry_policy
        self.direct_response = direct_response
        self.redirect = redirect
        self.upstream_protocol = upstream_protocol
        self.prefix_rewrite = prefix_rewrite
        self.host_rewrite = host_rewrite
        self.virtual_host_name = virtual_host_name
        self._request_mutation = request_mutation or HeaderMutation()
        self._response_mutation = response_mutation or HeaderMutation()
        #: whether finalising a request changes it (header edits, path or host rewrite),
        #: and whether the response gets edits: a plain route skips both steps
        self.edits_request = bool(self._request_mutation or prefix_rewrite or host_rewrite)
        self.edits_response = bool(self._response_mutation)

        cum: list[int] = []
        total = 0
        for name, weight in self.weighted_clusters:
            if weight < 0:
                raise RouterConfigError(f"weighted cluster {name!r} has a negative weight {weight}")
            total += weight
            cum.append(total)
        if self.weighted_clusters and total <= 0:
            raise RouterConfigError("weighted_clusters: the weights add up to 0")
        self._cum_weights = tuple(cum)
        self._total_weight = total
        # prefix_rewrite replaces what the path test matched: the prefix for a prefix
        # route, "" (so the rewrite is prepended) for a match-any route, and the whole
        # path for exact and regex routes (they match all of it).
        self._rewrite_whole_path = path_matcher.kind in (PathKind.EXACT, PathKind.REGEX)

    @classmethod
    def from_config(
        cls,
        cfg: RouteConfig,
        vhost: VirtualHostConfig | None = None,
        router_headers: tuple[Sequence[str], Sequence[HeaderValueConfig]] | None = None,
        *,
        what: str = "route",
    ) -> Route:
        """Compile one ``routers[]`` entry of a virtual host.

        ``vhost`` and ``router_headers`` (the router config's request header
        ``(to_remove, to_add)``) supply the outer levels of the request header edits.
        """
        path_matcher = PathMatcher.from_config(cfg.match, f"{what}.match")
        header_matchers = [
            HeaderMatcher.from_config(h, f"{what}.match.headers[{i}]")
            for i, h in enumerate(cfg.match.headers)
        ]
        # Direct-response and redirect routes have no action: an empty one has the
        # right defaults (no cluster, timeout 0, no edits).
        action = cfg.route if cfg.route is not None else _NO_ACTION
        if cfg.redirect is not None and cfg.redirect.response_code not in REDIRECT_CODES:
            raise RouterConfigError(
                f"{what}.redirect.response_code: {cfg.redirect.response_code} is not one of "
                f"{', '.join(map(str, sorted(REDIRECT_CODES)))}"
            )

        levels: list[tuple[Sequence[str], Sequence[HeaderValueConfig]]] = [
            (action.request_headers_to_remove, action.request_headers_to_add),
            (cfg.request_headers_to_remove, cfg.request_headers_to_add),
        ]
        if vhost is not None:
            levels.append((vhost.request_headers_to_remove, vhost.request_headers_to_add))
        if router_headers is not None:
            levels.append(router_headers)
        try:
            return cls(
                path_matcher,
                header_matchers,
                cluster_name=action.cluster_name,
                weighted_clusters=[(w.name, w.weight) for w in action.weighted_clusters],
                timeout=action.timeout,
                retry_policy=action.retry_policy,
                direct_response=cfg.direct_response,
                redirect=cfg.redirect,
                upstream_protocol=action.upstream_protocol,
                prefix_rewrite=action.prefix_rewrite,
                host_rewrite=action.host_rewrite,
                request_mutation=HeaderMutation.from_levels(levels),
                response_mutation=HeaderMutation.from_levels(
                    [(action.response_headers_to_remove, action.response_headers_to_add)]
                ),
                virtual_host_name=vhost.name if vhost is not None else "",
            )
        except RouterConfigError as e:
            raise RouterConfigError(f"{what}.route: {e}") from None

    # -- matching ----------------------------------------------------------------

    def matches(self, path: str, headers: HeaderMap) -> bool:
        """Whether this route takes a request (``path`` already without its query).

        The route table inlines this test in its loop; this is the readable form.
        """
        if not self.path_matcher.matches(path):
            return False
        return all(m.matches(headers) for m in self.header_matchers)

    # -- the action ----------------------------------------------------------------

    def choose_cluster(self, rand: random.Random | None = None) -> str:
        """The cluster for one request: ``cluster_name``, or a weighted pick.

        Each weighted cluster is chosen with probability ``weight / total`` exactly
        (MOSN's loop is off by one: it gives the first cluster one extra slot).  Pass a
        seeded ``rand`` for reproducible picks.
        """
        if not self._cum_weights:
            return self.cluster_name
        r = (rand or _default_random).randrange(self._total_weight)
        return self.weighted_clusters[bisect_right(self._cum_weights, r)][0]

    def apply_request_headers(self, headers: HeaderMap) -> None:
        """Apply request header edits: route level, then virtual host, then router."""
        self._request_mutation.apply(headers)

    def apply_response_headers(self, headers: HeaderMap) -> None:
        """Apply the route's ``response_headers_to_remove`` / ``_to_add``."""
        self._response_mutation.apply(headers)

    def rewrite_path(self, path: str) -> str:
        """Apply ``prefix_rewrite`` to a request path, keeping its query string.

        The part the route matched is replaced: the prefix of a prefix route, the whole
        path of an exact or regex route; a route with no path test has matched the empty
        prefix, so the rewrite is prepended.  A path the route does not match (the
        caller changed it after matching) is returned unchanged.
        """
        rewrite = self.prefix_rewrite
        if not rewrite:
            return path
        q = path.find("?")
        bare, query = (path, "") if q < 0 else (path[:q], path[q:])
        if not self.path_matcher.matches(bare):
            return path
        if self._rewrite_whole_path:
            return rewrite + query
        return rewrite + bare[len(self.path_matcher.value) :] + query

    def __repr__(self) -> str:
        if self.direct_response is not None:
            action = f"direct_response={self.direct_response.status}"
        elif self.redirect is not None:
            action = f"redirect={self.redirect.response_code}"
        elif self.weighted_clusters:
            action = f"weighted_clusters={list(self.weighted_clusters)}"
        else:
            action = f"cluster={self.cluster_name!r}"
        return f"<Route {self.path_matcher!r} headers={list(self.header_matchers)} {action}>"
