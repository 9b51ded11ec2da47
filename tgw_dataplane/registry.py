"""The middlebox registry: which plug-in processes each node kind (a static mapping, no import-time side effects).

The dataplane builds one middlebox per appliance instance and GWLB endpoint with the factory this mapping names
for the node's kind (:mod:`tgw_dataplane.middlebox`). To add or replace a kind, pass your own mapping to
``Dataplane(topology, middleboxes={**MIDDLEBOXES, "my-kind": factory})``.

==================== =========================================== =========================================
kind                 node                                        factory
==================== =========================================== =========================================
``stateful-firewall`` an instance with that kind                  :func:`tgw_dataplane.appliances.firewall_factory`
``router``            an instance with that kind                  :func:`tgw_dataplane.appliances.router_factory`
``gwlb-endpoint``     a GWLB endpoint (:class:`model.GwlbEndpoint`) :func:`tgw_dataplane.gwlb.endpoint_factory`
``gwlb-target``       an instance with that kind                  :func:`tgw_dataplane.gwlb.target_factory`
==================== =========================================== =========================================
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from tgw_dataplane import appliances, gwlb
from tgw_dataplane.middlebox import MiddleboxFactory

MIDDLEBOXES: Mapping[str, MiddleboxFactory] = MappingProxyType(
    {
        "stateful-firewall": appliances.firewall_factory,
        "router": appliances.router_factory,
        "gwlb-endpoint": gwlb.endpoint_factory,
        "gwlb-target": gwlb.target_factory,
    }
)
"""The built-in plug-ins, kind -> ``factory(host, node_id)`` (read-only)."""
