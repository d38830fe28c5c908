"""Markdown for people: a version's metrics side by side with production's, overall and per
segment, with each gate's verdict; the same text in the terminal and in a pull request."""

from registry.gates import OVERALL, Check
from registry.lifecycle import GateResult

# the overall metrics shown besides the gated ones, when the evaluation has them
SHOWN = (
    "ndcg@10", "ndcg@20", "recall@10", "recall@20", "precision@10", "map@10", "mrr",
    "hit_rate@10", "coverage@10", "novelty@10",
)  # fmt: skip


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _diff(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a - b:+.4f}"


def _verdict(check: Check | None) -> str:
    if check is None:
        return ""
    if check.skipped:
        return f"not judged ({check.note.removeprefix('not judged: ')})"
    return "ok" if check.passed else "**FAIL**"


def gate_section(title: str, result: GateResult) -> str:
    """A heading, the verdict, and the side-by-side tables of one gated version."""
    verdict = result.verdict
    prod = result.production
    head = f"v{prod}" if prod else "(none)"
    lines = [
        f"### {title}: {'passed' if verdict.passed else 'REFUSED'}",
        "",
        verdict.reason,
        "",
        f"Window: {result.candidate.window.describe()}.",
        "",
        f"| metric | production {head} | v{result.version} | difference | tolerance | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    checks = {(c.scope, c.metric): c for c in verdict.checks}
    overall = result.candidate.overall
    base = result.baseline.overall if result.baseline else {}
    gated = [c.metric for c in verdict.checks if c.scope == OVERALL]
    for metric in gated + [m for m in SHOWN if m in overall and m not in gated]:
        check = checks.get((OVERALL, metric))
        tolerance = _num(check.tolerance) if check else ""
        lines.append(
            f"| {metric} | {_num(base.get(metric))} | {_num(overall.get(metric))} | "
            f"{_diff(overall.get(metric), base.get(metric))} | {tolerance} | {_verdict(check)} |"
        )
    segments = sorted(
        set(result.candidate.segments) | set(result.baseline.segments if result.baseline else {})
    )
    if segments:
        lines += [
            "",
            f"| segment | requests ({head} / v{result.version}) | metric | production {head} | "
            f"v{result.version} | difference | tolerance | verdict |",
            "|---|---:|---|---:|---:|---:|---:|---|",
        ]
        for segment in segments:
            mine = result.candidate.segments.get(segment, {})
            theirs = result.baseline.segments.get(segment, {}) if result.baseline else {}
            metrics = [c.metric for c in verdict.checks if c.scope == segment] or ["ndcg@10"]
            for metric in metrics:
                check = checks.get((segment, metric))
                tolerance = _num(check.tolerance) if check else ""
                before = int(theirs["requests"]) if "requests" in theirs else "-"
                sizes = f"{before} / {int(mine.get('requests', 0))}"
                lines.append(
                    f"| {segment} | {sizes} "
                    f"| {metric} | {_num(theirs.get(metric))} | {_num(mine.get(metric))} | "
                    f"{_diff(mine.get(metric), theirs.get(metric))} | {tolerance} | "
                    f"{_verdict(check)} |"
                )
    return "\n".join(lines) + "\n"
