"""The readable side of a training run: a Markdown report with its plots.

Feature importance, metrics by segment, and the ranker's learning curve, written next to the
metrics JSON and logged to MLflow with the run.
"""

import logging
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)


def _table(rows: dict[str, dict[str, float]], columns: list[str]) -> str:
    head = "| model | " + " | ".join(columns) + " |"
    rule = "|---" * (len(columns) + 1) + "|"
    body = [
        f"| {name} | "
        + " | ".join(f"{values.get(col, float('nan')):.4f}" for col in columns)
        + " |"
        for name, values in rows.items()
    ]
    return "\n".join([head, rule, *body])


def _artefact_lines(artefact: dict | None) -> list[str]:
    """What the figures judge and what the registered artefact was fit on: they differ, on
    purpose, and a reader of the figures must know it."""
    if not artefact:
        return []
    return [
        f"{_sentence(artefact['judged'])} (model data end "
        f"{artefact['judged_model_data_end']}, {artefact['judged_model_users']:,} users).",
        "",
        f"{_sentence(artefact['deployed'])} (data end "
        f"{artefact['deployed_data_end']}, {artefact['deployed_users']:,} users, "
        f"{artefact['deployed_events']:,} events).",
        "",
    ]


def _sentence(text: str) -> str:
    """The report's phrases open a sentence here."""
    return text[:1].upper() + text[1:]


def _segment_order_lines(orders: dict | None) -> list[str]:
    """Which segments a simple list serves, and the validation figures behind each choice."""
    if not orders:
        return []
    rows = orders["validation"]
    names = sorted(
        {key for row in rows.values() for key in row}
        - {"requests", "served_by", "best_simple", "difference_ci95"}
    )
    lines = [
        "## Segments served by a simple list (validation check requests, NDCG@10)",
        "",
        "| segment | requests | served by | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for segment, row in rows.items():
        cells = [f"{row[n]:.4f}" if isinstance(row.get(n), float) else "-" for n in names]
        lines.append(
            f"| {segment} | {row['requests']} | {row['served_by']} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "A segment is served by a source's own order where the best one beats the ranker "
        "beyond noise (paired 95% interval of the difference above zero); new users are the "
        "cold-start choice's.",
        "",
    ]
    return lines


def write_report(
    folder: Path,
    report: dict,
    stages: list[dict[str, object]],
    importance: pd.Series,
    curve: dict[str, list[float]],
    k: int,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    top = importance.head(25)[::-1]
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.barh(top.index, top.to_numpy())
    ax.set_title("Ranker feature importance (total gain)")
    fig.tight_layout()
    fig.savefig(folder / "feature_importance.png", dpi=90)
    plt.close(fig)

    metric = f"ndcg@{k}"
    seg = pd.DataFrame(
        {
            m: {s: v.get(metric, 0.0) for s, v in segs.items()}
            for m, segs in report["segments"].items()
        }
    )
    fig, ax = plt.subplots(figsize=(8, 4))
    seg.plot.bar(ax=ax)
    ax.set_title(f"{metric} by segment (test)")
    ax.set_ylabel(metric)
    fig.tight_layout()
    fig.savefig(folder / "segments.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in curve.items():
        if name.endswith(f"ndcg@{k}"):
            ax.plot(values, label=name)
    chosen = report.get("ranker", {}).get("best_iteration")
    if chosen is not None:
        ax.axvline(chosen, color="grey", linestyle="--", label=f"kept: {chosen + 1} rounds")
    ax.set_xlabel("boosting round")
    ax.set_title("Ranker learning curve")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "learning_curve.png", dpi=90)
    plt.close(fig)

    columns = [c for c in next(iter(report["models"].values())) if "@" in c or c == "mrr"]
    lines = [
        "# Training report",
        "",
        f"Split: {report['split']}",
        "",
        "## Test metrics",
        "",
        *_artefact_lines(report.get("artefact")),
        _table(report["models"], columns),
        "",
        f"## {metric} by segment",
        "",
        seg.round(4).to_markdown() if hasattr(seg, "to_markdown") else str(seg),
        "",
        "![segments](segments.png)",
        "",
        "## Candidate recall (validation)",
        "",
        *[f"- {key}: {value:.4f}" for key, value in report["candidates"].items()],
        "",
        "## Ranker",
        "",
        f"{report['ranker']}",
        "",
        "![importance](feature_importance.png)",
        "",
        "![learning curve](learning_curve.png)",
        "",
        *_segment_order_lines(report.get("segment_orders")),
        "## Stages",
        "",
        "| stage | seconds | peak GB |",
        "|---|---|---|",
        *[f"| {s['stage']} | {s['seconds']} | {s['peak_gb']} |" for s in stages],
    ]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
