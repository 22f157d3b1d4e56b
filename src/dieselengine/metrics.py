"""`/metrics`: the hub's counters in Prometheus text format, read only when scraped."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .hub import Hub

_COUNTERS = (
    ("sessions_opened", "WebSocket sessions opened."),
    ("sessions_closed", "WebSocket sessions closed (their on_close returned)."),
    ("messages_in", "Messages received from clients."),
    ("bytes_in", "Payload bytes received from clients."),
    ("frames_out", "Frames delivered to clients (one per recipient)."),
    ("bytes_out", "Bytes written to clients."),
    ("handler_calls", "Handler hook calls."),
    ("handler_errors", "Handler calls that raised an uncaught error."),
    ("handler_seconds", "Time spent in handler calls (synchronous part)."),
    ("slow_consumer_closes", "Sessions closed with 1008 because they did not read."),
    ("protocol_closes", "Sessions closed for a protocol or limit violation (1002, 1007, 1009)."),
    ("messages_deflated", "Messages compressed (permessage-deflate): once per broadcast, however many got it."),
    ("messages_inflated", "Compressed messages received from clients."),
)


class HubCollector(Collector):
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Metric]:
        hub = self._hub
        yield GaugeMetricFamily("diesel_sessions_open", "Open WebSocket sessions.", value=len(hub.sessions))
        yield GaugeMetricFamily("diesel_rooms", "Rooms with members on this node.", value=len(hub.rooms))
        yield GaugeMetricFamily("diesel_receive_buffered_bytes", "Bytes held for clients while receiving (request "
                                "heads, unfinished frames and messages), within --max-buffered.",
                                value=hub.stats.buffered)
        for name, help_text in _COUNTERS:
            yield CounterMetricFamily(f"diesel_{name}", help_text, value=getattr(hub.stats, name))
        fetches = CounterMetricFamily("diesel_fetches", "JavaScript fetch() requests by origin and outcome.",
                                      labels=("origin", "outcome"))
        for (origin, outcome), value in sorted(hub.stats.fetches.items()):
            fetches.add_metric((origin, outcome), value)
        yield fetches
        refused = CounterMetricFamily("diesel_upgrades_refused", "Upgrades answered with an HTTP error, by reason.",
                                      labels=["reason"])
        for reason, count in sorted(hub.stats.refusals.items()):
            refused.add_metric([reason], count)
        yield refused
        closes = CounterMetricFamily("diesel_limit_closes", "Sessions the server closed for a limit (1008), by reason.",
                                     labels=["reason"])
        for reason, count in sorted(hub.stats.limit_closes.items()):
            closes.add_metric([reason], count)
        yield closes
        if hub.bus is not None:
            yield GaugeMetricFamily("diesel_cluster_healthy", "1 while the cluster bus is connected.",
                                    value=1 if hub.bus.healthy else 0)
            for name, value in hub.bus.metrics().items():
                yield CounterMetricFamily(f"diesel_cluster_{name}", f"Cluster bus: {name.replace('_', ' ')}.",
                                          value=value)


def registry_for(hub: Hub) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(hub))
    registry.register(ProcessCollector(registry=None))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
