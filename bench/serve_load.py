"""One server's load profile: closed loop for its saturation throughput, then open loop below it.

Closed loop at 1, 8, 32 and 128 clients: the most answers per second among them is the
saturation throughput, and one client's median is the unloaded latency. Open loop at 25%, 50%,
75% and 90% of that throughput, Poisson arrivals: p50, p99 and errors at a stated load.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bench import loopback_load
from bench.serve_figures import percentile

CLIENTS = (1, 8, 32, 128)
FRACTIONS = (0.25, 0.50, 0.75, 0.90)
WARM_UP_SECONDS = 2.0


def summary(load: loopback_load.Load) -> dict:
    """A load's figures, JSON-ready: answers per second, p50 and p99, errors and own CPU."""
    return {
        "throughput": load.throughput,
        "answered": len(load.latencies),
        "p50": percentile(load.latencies, 0.50) if load.latencies else None,
        "p99": percentile(load.latencies, 0.99) if load.latencies else None,
        "errors": len(load.errors),
        "first_errors": load.errors[:3],
        "seconds": load.seconds,
        "generator_cpu": load.cpu_seconds,
    }


def profile(
    base: str,
    path: str,
    bodies: Sequence[dict],
    seconds: tuple[float, float],
    say: Callable[[str], None],
) -> dict:
    """Closed loop then open loop against `base` + `path`; `seconds`: each closed and open run."""
    closed_seconds, open_seconds = seconds
    loopback_load.run_closed(base, path, bodies, 8, WARM_UP_SECONDS)  # first calls, untimed
    closed = {}
    for clients in CLIENTS:
        closed[clients] = summary(
            loopback_load.run_closed(base, path, bodies, clients, closed_seconds)
        )
        say(f"  {clients:>3} clients: {closed[clients]['throughput']:.1f} /s")
    saturation = max(figures["throughput"] for figures in closed.values())
    opened = {}
    for fraction in FRACTIONS:
        rate = fraction * saturation
        load = loopback_load.run_open(base, path, bodies, rate, open_seconds)
        opened[fraction] = {"rate": rate, **summary(load)}
        p99 = opened[fraction]["p99"]
        say(f"  open loop at {fraction:.0%} ({rate:.1f} /s): p99 {(p99 or 0) * 1000:.0f} ms")
    return {
        "closed": closed,
        "open": opened,
        "saturation": saturation,
        "unloaded_p50": closed[1]["p50"],
    }
