"""The build benchmark's pure figures: derived values, ratios, the tables and the verdicts."""

from __future__ import annotations

from bench.text import human_bytes, seconds_text

LINK_MBIT = 100
VARIANTS = (  # key in the results, column heading
    ("before", '"before"'),
    ("uv_guide", "uv guide"),
    ("generated_conda", "generated, conda"),
    ("generated_uv", "generated, uv"),
    ("floor", "floor"),
)
ROWS = (  # label, key, how a value is shown
    ("base image (local stand-in)", "base_bytes", human_bytes),
    ("cold build, as measured", "cold_seconds", seconds_text),
    ("cold build at {link}", "link_seconds", seconds_text),
    ("downloaded", "bytes_down", human_bytes),
    ("image size", "image_bytes", human_bytes),
    ("added above its base", "above_base_bytes", human_bytes),
    ("source-only rebuild", "rebuild_seconds", seconds_text),
    ("rebuild / cold build", "rebuild_share", lambda value: f"{value:.1%}"),
    ("`docker run` to the doctor passing", "doctor_seconds", seconds_text),
    ("`docker run` to the three imports", "import_seconds", seconds_text),
)
RATIOS = (  # label, key, the variant divided into it
    ("added above its base / the uv guide's", "above_base_bytes", "uv_guide"),
    ("added above its base / the floor's", "above_base_bytes", "floor"),
    ("cold build at {link} / the uv guide's", "link_seconds", "uv_guide"),
    ("cold build at {link} / the floor's", "link_seconds", "floor"),
    ("downloaded / the floor's", "bytes_down", "floor"),
)
IMAGE_SIZE_TARGETS = (1.05, 1.15)  # x the uv guide's, x the floor's: added above the base
LINK_TARGET = 1.05  # x the uv guide's cold build at the link rate
REBUILD_SHARE = 0.05  # source-only rebuild / cold build


def at_link(seconds: float, bytes_down: int, busy_seconds: float, rate: float) -> float:
    """The build's time had its downloads come at `rate` bytes/s instead of as measured.

    The measured download share is the wall time in which bytes were flowing (`busy_seconds`);
    it is replaced by the time the same bytes take at `rate`.
    """
    return seconds - busy_seconds + bytes_down / rate


def above_base(image_bytes: int, base_bytes: int) -> int:
    """What a Dockerfile adds to its base: the image's size minus the base image's."""
    if image_bytes < base_bytes:
        raise ValueError(f"an image of {image_bytes} bytes is smaller than its base ({base_bytes})")
    return image_bytes - base_bytes


def with_derived(result: dict) -> dict:
    """A variant's figures plus the ones computed from them: above base, rebuild share."""
    derived = dict(result)
    if result.get("image_bytes") is not None and result.get("base_bytes") is not None:
        derived["above_base_bytes"] = above_base(result["image_bytes"], result["base_bytes"])
    if result.get("rebuild_seconds") is not None and result.get("cold_seconds"):
        derived["rebuild_share"] = result["rebuild_seconds"] / result["cold_seconds"]
    return derived


def floor_figures(
    base_bytes: int,
    installed_bytes: int,
    bytes_down: int,
    cold_seconds: float,
    warm_install_seconds: float,
    rate: float,
) -> dict:
    """The floor: the base plus the installed runtime set, and the least time that set takes.

    That time is its wheels' bytes at the link rate plus an install of the same wheels from a
    warm local uv cache; as measured, it is the same install from an empty cache.
    """
    return {
        "base_bytes": base_bytes,
        "image_bytes": base_bytes + installed_bytes,
        "bytes_down": bytes_down,
        "cold_seconds": cold_seconds,
        "link_seconds": bytes_down / rate + warm_install_seconds,
        "warm_install_seconds": warm_install_seconds,
    }


def ratio(results: dict, key: str, variant: str, against: str) -> float | None:
    mine, theirs = results.get(variant, {}).get(key), results.get(against, {}).get(key)
    if mine is None or not theirs:
        return None
    return mine / theirs


def cell(value, show) -> str:
    return "-" if value is None else show(value)


def results_table(results: dict, link: str) -> str:
    """Markdown: one row per figure, one column per variant measured; "-" where none applies."""
    shown = [(key, heading) for key, heading in VARIANTS if key in results]
    lines = [
        "| | " + " | ".join(heading for _, heading in shown) + " |",
        "|---|" + "--:|" * len(shown),
    ]
    for label, key, show in ROWS:
        cells = [cell(results[variant].get(key), show) for variant, _ in shown]
        lines.append(f"| {label.format(link=link)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios_table(results: dict, link: str) -> str:
    """Markdown: each built variant's figures divided by the uv guide's and by the floor's."""
    shown = [(key, heading) for key, heading in VARIANTS if key in results and key != "floor"]
    lines = [
        "| | " + " | ".join(heading for _, heading in shown) + " |",
        "|---|" + "--:|" * len(shown),
    ]
    for label, key, against in RATIOS:
        cells = [
            cell(ratio(results, key, variant, against), lambda value: f"{value:.2f}x")
            for variant, _ in shown
        ]
        lines.append(f"| {label.format(link=link)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(results: dict, link: str) -> list[tuple[bool | None, str]]:
    """(met, line) per target, on what each Dockerfile adds above its base; None: not measured."""
    lines: list[tuple[bool | None, str]] = []
    size_peer, size_floor = IMAGE_SIZE_TARGETS

    def judge(value: float | None, limit: float, text: str) -> None:
        shown = "not measured" if value is None else f"{value:.2f}x"
        lines.append((None if value is None else value <= limit, f"{text}  ({shown})"))

    judge(
        ratio(results, "above_base_bytes", "generated_uv", "uv_guide"),
        size_peer,
        f"generated (uv installer) adds <= {size_peer}x what the uv guide adds to its base",
    )
    judge(
        ratio(results, "link_seconds", "generated_uv", "uv_guide"),
        LINK_TARGET,
        f"generated (uv installer) cold build at {link} <= {LINK_TARGET}x the uv guide's",
    )
    for variant, installer in (("generated_conda", "conda"), ("generated_uv", "uv")):
        judge(
            ratio(results, "above_base_bytes", variant, "floor"),
            size_floor,
            f"generated ({installer} installer) adds <= {size_floor}x the floor's installed bytes",
        )
    for variant, heading in VARIANTS:
        share = results.get(variant, {}).get("rebuild_share")
        if variant.startswith("generated"):
            text = f"{heading}: source-only rebuild <= {REBUILD_SHARE:.0%} of its cold build"
            if share is None:
                lines.append((None, f"{text}  (not measured)"))
            else:
                lines.append(
                    (
                        share <= REBUILD_SHARE,
                        f"{text}  ({seconds_text(results[variant]['rebuild_seconds'])} / "
                        f"{seconds_text(results[variant]['cold_seconds'])} = {share:.1%})",
                    )
                )
    return lines
