"""The serving benchmark's report: its two tables and its verdicts, from one run's figures.

`figures` holds "limit" (the in-process texts_rate and queries_rate), "profiles" (by server:
serve_load.profile's closed and open loads), "skipped" (by server: why it did not run), and the
service's own figures (endpoint, agreement, cold_start, peak_rss...). Missing figures read "-".
"""

from __future__ import annotations

from bench import serve_figures as sf
from bench.serve_figures import ms, per_second, ratio
from bench.text import human_bytes, verdict_word

LABELS = {
    "service": "this service, embeddings",
    "queries": "this service, /query",
    "naive": "naive tutorial service",
    "infinity": "infinity-emb",
}
# Where the figures are judged: the 32-client closed loop and the open loop at half saturation.
AGAINST_NAIVE, HALF = 32, 0.5


def label(figures: dict, name: str) -> str:
    if name == "service":
        return f"this service, {figures.get('endpoint', 'embeddings')}"
    if name == "infinity":
        return f"infinity-emb ({figures.get('backend', 'torch')})"
    return LABELS[name]


def load_rows(figures: dict) -> str:
    """Markdown: every load of every server, one row each."""
    lines = [
        "| server | load | answered /s | p50 | p99 | errors |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for name, profile in figures.get("profiles", {}).items():
        loads = [(f"closed, {n} clients", load) for n, load in profile["closed"].items()]
        loads += [
            (f"open, {fraction:.0%} ({load['rate']:,.1f} /s)", load)
            for fraction, load in profile["open"].items()
        ]
        for what, load in loads:
            lines.append(
                f"| {label(figures, name)} | {what} | {per_second(load['throughput'])} "
                f"| {ms(load['p50'])} | {ms(load['p99'])} | {load['errors']} |"
            )
    for name, reason in figures.get("skipped", {}).items():
        lines.append(f"| {label(figures, name)} | not run: {reason} | - | - | - | - |")
    return "\n".join(lines)


def generator_share(figures: dict) -> float | None:
    """The load generator's CPU time over its wall time, across every load."""
    loads = [
        load
        for profile in figures.get("profiles", {}).values()
        for kind in ("closed", "open")
        for load in profile[kind].values()
    ]
    wall = sum(load["seconds"] for load in loads)
    return sum(load["generator_cpu"] for load in loads) / wall if wall else None


def summary_rows(figures: dict) -> str:
    """Markdown: the figures the verdicts are made of, and the run's own checks."""
    limit, profiles = figures.get("limit", {}), figures.get("profiles", {})
    agreement = figures.get("agreement", {})
    share = generator_share(figures)
    rows = [
        ("in-process limit: texts per second, batched", per_second(limit.get("texts_rate"))),
        (
            "in-process limit: queries per second, batched embed + search",
            per_second(limit.get("queries_rate")),
        ),
    ]
    for name, profile in profiles.items():
        rows.append((f"{label(figures, name)}: saturation", per_second(profile["saturation"])))
        rows.append((f"{label(figures, name)}: unloaded p50", ms(profile["unloaded_p50"])))
        if "torch_threads" in profile:
            rows.append((f"{label(figures, name)}: torch threads", str(profile["torch_threads"])))
    rows += [
        ("load generator: CPU used over wall time", "-" if share is None else f"{share:.0%}"),
        (
            "one client, p50: load generator against the service's access log",
            f"{ms(agreement.get('generator_p50'))} against {ms(agreement.get('log_p50'))}",
        ),
        ("documents stored for /query", f"{figures.get('documents', 0):,}"),
        ("ingest: POST /documents, 64 per request", per_second(figures.get("ingest_rate"))),
        ("serving process: peak RSS (VmHWM)", size(figures.get("peak_rss"))),
        ("the model on disk", size(figures.get("model_bytes"))),
        ("cold start: `docker run` to /readyz 200 (median)", seconds(figures.get("cold_start"))),
    ]
    lines = ["| figure | value |", "|---|--:|"]
    return "\n".join(lines + [f"| {name} | {value} |" for name, value in rows])


def size(value: float | None) -> str:
    return "-" if value is None else human_bytes(value)


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def times(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.2f}x"


def saturation(figures: dict, name: str) -> float | None:
    profile = figures.get("profiles", {}).get(name)
    return None if profile is None else profile["saturation"]


def at(figures: dict, name: str, kind: str, key: float | int) -> dict:
    return figures.get("profiles", {}).get(name, {}).get(kind, {}).get(key, {})


def against_limits(figures: dict) -> list[tuple[bool | None, str]]:
    limit = figures.get("limit", {})
    lines: list[tuple[bool | None, str]] = []
    for name, key, target, what in (
        ("service", "texts_rate", sf.EMBED_OF_LIMIT, "in-process batched limit"),
        ("queries", "queries_rate", sf.QUERY_OF_LIMIT, "in-process embed-and-search limit"),
    ):
        share = ratio(saturation(figures, name), limit.get(key))
        lines.append(
            (
                None if share is None else share >= target,
                f"{label(figures, name)}: saturation >= {target:g}x the {what}  ({times(share)}: "
                f"{per_second(saturation(figures, name))} against {per_second(limit.get(key))})",
            )
        )
    return lines


def against_peers(figures: dict) -> list[tuple[bool | None, str]]:
    ours, naive = (
        at(figures, "service", "closed", AGAINST_NAIVE),
        at(figures, "naive", "closed", AGAINST_NAIVE),
    )
    gain = ratio(ours.get("throughput"), naive.get("throughput"))
    lower = None if gain is None else (ours["p99"] or 0) < (naive["p99"] or float("inf"))
    lines: list[tuple[bool | None, str]] = [
        (
            None if gain is None else gain >= sf.OVER_NAIVE and bool(lower),
            f"against the naive tutorial service, {AGAINST_NAIVE} clients: "
            f">= {sf.OVER_NAIVE:g}x its throughput and a lower p99  ({times(gain)}; "
            f"p99 {ms(ours.get('p99'))} against {ms(naive.get('p99'))})",
        )
    ]
    over = ratio(saturation(figures, "service"), saturation(figures, "infinity"))
    reason = figures.get("skipped", {}).get("infinity")
    lines.append(
        (
            None if over is None else over >= sf.OVER_INFINITY,
            f"against infinity-emb, same backend, saturation: "
            f">= {sf.OVER_INFINITY:g}x its throughput  "
            f"({times(over) if reason is None else 'not measured: ' + reason})",
        )
    )
    return lines


def under_load(figures: dict) -> list[tuple[bool | None, str]]:
    lines: list[tuple[bool | None, str]] = []
    for name in ("service", "queries"):
        half = at(figures, name, "open", HALF)
        unloaded = figures.get("profiles", {}).get(name, {}).get("unloaded_p50")
        spread = ratio(half.get("p99"), unloaded)
        lines.append(
            (
                None if spread is None else spread <= sf.P99_AT_HALF,
                f"{label(figures, name)}: p99 at 50% of saturation, open loop, "
                f"<= {sf.P99_AT_HALF:g}x the unloaded p50  "
                f"({times(spread)}: {ms(half.get('p99'))} against {ms(unloaded)})",
            )
        )
    opened = [
        load
        for name in ("service", "queries")
        for load in figures.get("profiles", {}).get(name, {}).get("open", {}).values()
    ]
    errors = sum(load["errors"] for load in opened) if opened else None
    lines.append(
        (
            None if errors is None else errors == 0,
            f"this service: errors at up to 90% of saturation: 0  "
            f"({'not measured' if errors is None else errors})",
        )
    )
    return lines


def verdicts(figures: dict) -> list[tuple[bool | None, str]]:
    """(met, line) per target of issue 25 this run measures; None: not measured."""
    cold = figures.get("cold_start")
    return [
        *against_limits(figures),
        *against_peers(figures),
        *under_load(figures),
        (
            None if cold is None else cold <= sf.COLD_START,
            f"cold start, `docker run` to ready, model baked in: <= {sf.COLD_START:g} s  "
            f"({seconds(cold) if cold is not None else 'not measured'})",
        ),
    ]


def verdict_lines(figures: dict) -> str:
    return "\n".join(f"{verdict_word(met):<12}  {line}" for met, line in verdicts(figures))
