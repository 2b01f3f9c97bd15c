"""Route sanity: a bridge network whose subnet overlaps a route or an address the host already has breaks
quietly (replies leave by the wrong interface; published ports reset connections). Read the host's routes and
addresses with pyroute2 and name the interface in the way.

Only the machine reconcile runs on can be read: for an engine reached over tcp:// or ssh:// the check is skipped.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Never a conflict: everything overlaps a default route, and every IPv6 link has its own fe80::/64.
_IGNORED = (ipaddress.ip_network("fe80::/10"), ipaddress.ip_network("ff00::/8"))


@dataclass(frozen=True)
class HostRoute:
    """A destination the host already reaches through `interface` (`what`: "route" or "address")."""

    network: IPNetwork
    interface: str
    what: str = "route"


def bridge_name(network_id: str, options: dict[str, str]) -> str:
    """The Linux bridge the engine made for a bridge network: the option the user set, or `br-<id[:12]>`."""
    return options.get("com.docker.network.bridge.name") or f"br-{network_id[:12]}"


def conflicting_route(subnet: IPNetwork, routes: Iterable[HostRoute], own_interface: str | None) -> HostRoute | None:
    """The first host route or address overlapping `subnet`, other than those of the network's own bridge."""
    for route in routes:
        if route.network.version != subnet.version or route.network.prefixlen == 0:
            continue
        if any(route.network.version == i.version and route.network.subnet_of(i) for i in _IGNORED):  # type: ignore[arg-type]
            continue
        if own_interface is not None and route.interface == own_interface:
            continue
        if route.network.overlaps(subnet):
            return route
    return None


def describe(subnet: IPNetwork, route: HostRoute) -> str:
    return (
        f"subnet {subnet} overlaps the host's {route.what} {route.network} on interface {route.interface}; "
        "containers on it would be unreachable from that network (set spec.allowRouteOverlap: true if intended)"
    )


def read_host_routes() -> list[HostRoute]:
    """The main routing table's routes and every interface address of this machine's network namespace."""
    from pyroute2 import IPRoute

    found: list[HostRoute] = []
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for route in ipr.get_routes(table=254):
            dst = route.get_attr("RTA_DST")
            if dst is None or route["dst_len"] == 0:
                continue
            oif = route.get_attr("RTA_OIF")
            interface = names.get(oif, f"#{oif}") if oif is not None else _no_interface(route["type"])
            found.append(HostRoute(ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False), interface))
        for addr in ipr.get_addr():
            value = addr.get_attr("IFA_ADDRESS")
            if value is None:
                continue
            network = ipaddress.ip_network(f"{value}/{addr['prefixlen']}", strict=False)
            found.append(HostRoute(network, names.get(addr["index"], f"#{addr['index']}"), "address"))
    return found


def _no_interface(route_type: int) -> str:
    # rtnetlink route types: 6 blackhole, 7 unreachable, 8 prohibit; others without RTA_OIF are multipath
    return {6: "(blackhole)", 7: "(unreachable)", 8: "(prohibit)"}.get(route_type, "(multipath)")


def first_conflict(subnets: Sequence[IPNetwork], routes: Iterable[HostRoute], own_interface: str | None) -> str | None:
    """Why these subnets would break on this host, or None."""
    routes = list(routes)
    for subnet in subnets:
        route = conflicting_route(subnet, routes, own_interface)
        if route is not None:
            return describe(subnet, route)
    return None
