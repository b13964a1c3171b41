"""The quality chart: pass@1 against mean generated tokens and against mean wall seconds per
problem, one point per configuration, the best-of-N curve and the Pareto frontier drawn (PNG and SVG).

Configurations in the most common prompt style are labelled by name alone (the title names the
style), and adjustText moves labels apart where points crowd.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from bench.quality_stats import SAMPLERS, is_sampler


def save_figure(fig: Any, stem: str | Path) -> None:
    """``stem``.png and ``stem``.svg, the same bytes for the same figure: the SVG gets no date and
    its element ids a fixed salt, so a report rerun on unchanged rows changes no committed file."""
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "treedec"}):
        fig.savefig(f"{stem}.png", dpi=120)
        fig.savefig(f"{stem}.svg", dpi=120, metadata={"Date": None})


def pareto(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points no other point beats on both cost (lower) and pass@1 (higher), by cost.

    >>> [p[2] for p in pareto([(1, 0.4, "a"), (2, 0.3, "b"), (3, 0.6, "c")])]
    ['a', 'c']
    """
    frontier: list[tuple[float, float, str]] = []
    for cost, score, name in sorted(points):
        if not frontier or score > frontier[-1][1]:
            frontier.append((cost, score, name))
    return frontier


def short_labels(names: list[str]) -> tuple[dict[str, str], str | None]:
    """Each configuration's label, without the most common style, and that style.

    >>> short_labels(["pgtd@chat", "bon4@chat", "greedy@completion"])
    ({'pgtd@chat': 'pgtd', 'bon4@chat': 'bon4', 'greedy@completion': 'greedy@completion'}, 'chat')
    """
    parts = {n: n.partition("@") for n in names}
    styles = Counter(style for _, at, style in parts.values() if at)
    common = styles.most_common(1)[0][0] if styles else None
    return {n: base if style == common else n for n, (base, _, style) in parts.items()}, common


def model_label(rows: list[dict[str, Any]]) -> str:
    """The models the rows ran, as the chart's title names them (a row names its model when it is
    not the default).

    >>> model_label([{}, {"model": "bundled-default"}]), model_label([{"model": "qwen-1.5b"}])
    ('bundled Qwen2.5-Coder-0.5B-Instruct', 'bundled Qwen2.5-Coder-1.5B-Instruct')
    """
    from search.model.bundled import ALIASES, BUNDLED, DEFAULT_MODEL

    names = sorted({ALIASES.get(n, n) for n in (r.get("model") or DEFAULT_MODEL for r in rows)})
    shown = [BUNDLED[n].description.split(",")[0] if n in BUNDLED else n for n in names]
    return "bundled " + " and ".join(shown)


def draw(
    summary: dict[str, Any],
    stem: Path,
    dataset: str = "HumanEval",
    answers: bool = False,
    model: str = "bundled Qwen2.5-Coder-0.5B-Instruct",
) -> None:
    """The chart of ``summary``'s configurations on ``dataset`` (``answers``: an answer dataset, where
    the reference curve is self-consistency's) with ``model``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from adjustText import adjust_text

    labels, common_style = short_labels(list(summary))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, key, label in (
        (axes[0], "mean_generated_tokens", "mean generated tokens per problem"),
        (axes[1], "mean_wall_seconds", "mean wall seconds per problem (2-core CPU)"),
    ):
        points = [(s[key], 100 * s["pass@1"], name) for name, s in summary.items()]
        texts = []
        for cost, score, name in points:
            ax.scatter(
                cost,
                score,
                s=30,
                color="tab:blue" if name.startswith(("greedy", "beam", *SAMPLERS)) else "tab:red",
            )
            texts.append(ax.text(cost, score, labels[name], fontsize=7))
        samplers = sorted(p for p in points if is_sampler(p[2]))
        if len(samplers) > 1:
            ax.plot(
                [p[0] for p in samplers],
                [p[1] for p in samplers],
                "-",
                color="tab:blue",
                alpha=0.5,
                label="self-consistency (majority vote)"
                if answers
                else "sampling + public-test filter (best-of-N)",
            )
        front = pareto(points)
        ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="gray", label="Pareto frontier")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy of the final answer (%)" if answers else "pass@1 on hidden tests (%)")
        ax.grid(alpha=0.3)
        ax.margins(x=0.08, y=0.12)  # no point on the frame, where the legend or a label would hide it
        ax.legend(loc="best", fontsize=8)
        adjust_text(texts, ax=ax, arrowprops={"arrowstyle": "-", "color": "gray", "lw": 0.5})
    n = min((s["problems"] for s in summary.values()), default=0)
    fig.suptitle(
        f"{dataset}, all {n} problems (configurations that ran every one); "
        f"{model}\nblue: plain decoding, red: search"
        + (f"; prompt style {common_style} unless named" if common_style else "")
    )
    fig.tight_layout()
    save_figure(fig, stem)
    plt.close(fig)
