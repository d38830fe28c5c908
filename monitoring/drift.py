"""Drift: what the shop and the service see now against the training reference.

Three sections, each computed from data and judged against ``thresholds.yaml``:

- **features**: the lake's events in the current window against the reference window (item
  department and category, price, device, country, event type), by Evidently's drift report;
- **predictions**: the recommended items served in the current window (scores, department,
  category, popularity band, price) against the served lists of the reference window; when
  the service logged none then, against what users interacted with in the reference window,
  without scores (the lake has none) and without a verdict (lists are not meant to look like
  interactions: the distances are shown, not judged);
- **recommendations**: coverage, novelty and popularity bias of the served lists.

A section with no rows in a window is skipped and says why; the run fails if every section is
skipped. Any drifted section makes the verdict ``drift`` (``recsys monitor drift`` exits 1).
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monitoring.thresholds import ColumnSet, Recommendations, Thresholds
from monitoring.windows import UNKNOWN, Lake, Window
from recsys import columns as c
from recsys import metrics
from recsys.errors import RecsysError

logger = logging.getLogger(__name__)
FEATURE_CATEGORICAL = ("department", "category", c.DEVICE, c.COUNTRY, c.EVENT_TYPE)
FEATURE_NUMERICAL = (c.PRICE,)
PREDICTION_CATEGORICAL = ("department", "category", "popularity")
PREDICTION_NUMERICAL = ("score", "price")
MOVERS = 5
POPULARITY_DAYS = 56
MIN_MOVER_SHARE = 0.005


@dataclass
class Section:
    """One section's verdict: per-column distances, or the reason it was skipped."""

    name: str
    rows: tuple[int, int] = (0, 0)
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    drifted: bool = False
    skipped: str | None = None
    snapshot: Any = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"drifted": self.drifted}
        if self.skipped:
            out["skipped"] = self.skipped
            return out
        out["rows"] = {"reference": self.rows[0], "current": self.rows[1]}
        if self.columns:
            out["columns"] = self.columns
        out |= self.figures
        return out


def feature_frame(events: pd.DataFrame) -> pd.DataFrame:
    """The event columns compared, as Evidently should read them (text or float)."""
    frame = pd.DataFrame(index=events.index)
    for column in FEATURE_CATEGORICAL:
        if column in events:
            frame[column] = events[column].astype("string").fillna(UNKNOWN).astype(str)
    if c.PRICE in events:
        frame[c.PRICE] = pd.to_numeric(events[c.PRICE], errors="coerce").astype(float)
    return frame.reset_index(drop=True)


def popularity_bands(reference: pd.DataFrame, catalogue_size: int, head_share: float) -> pd.Series:
    """item_id -> ``head`` (the top ``head_share`` of the catalogue by interactions in the
    reference window) or ``tail`` (other items with an interaction); others are ``unseen``."""
    counts = reference[c.ITEM_ID].value_counts()
    n_head = max(1, round(head_share * catalogue_size))
    bands = pd.Series("tail", index=counts.index, dtype=object)
    bands.iloc[:n_head] = "head"
    return bands


def slot_frame(served: pd.DataFrame, lake: Lake, bands: pd.Series) -> pd.DataFrame:
    """One row per recommended (request, item): score, rank, item facts, popularity band."""
    lengths = served["item_ids"].map(len).to_numpy()
    items = np.concatenate([np.asarray(x, dtype=object) for x in served["item_ids"]] or [[]])
    scores = np.concatenate([np.asarray(x, dtype=float) for x in served["scores"]] or [[]])
    slots = pd.DataFrame(
        {
            metrics.REQUEST_ID: np.repeat(served["request_id"].to_numpy(), lengths),
            c.ITEM_ID: items.astype(str),
            metrics.RANK: np.concatenate([np.arange(1, n + 1) for n in lengths] or [[]]).astype(
                np.int64
            ),
            "score": scores if len(scores) == len(items) else np.nan,
        }
    )
    return _with_facts(slots, lake, bands)


def _with_facts(frame: pd.DataFrame, lake: Lake, bands: pd.Series) -> pd.DataFrame:
    facts = lake.products.set_index(c.ITEM_ID)
    frame = frame.copy()
    frame["department"] = frame[c.ITEM_ID].map(facts["department"]).fillna(UNKNOWN)
    frame["category"] = frame[c.ITEM_ID].map(facts["category"]).fillna(UNKNOWN)
    frame["price"] = frame[c.ITEM_ID].map(facts["list_price"]).astype(float)
    frame["popularity"] = frame[c.ITEM_ID].map(bands).fillna("unseen").astype(str)
    return frame


def compare(
    name: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    config: ColumnSet,
    categorical: tuple[str, ...],
    numerical: tuple[str, ...],
    min_rows: int,
) -> Section:
    """Evidently's drift report of the shared columns, judged by ``config``'s thresholds."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    section = Section(name, rows=(len(reference), len(current)))
    if min(section.rows) < min_rows:
        section.skipped = (
            f"too few rows (reference {len(reference)}, current {len(current)}; "
            f"min_rows {min_rows})"
        )
        return section
    usable = [
        col
        for col in (*categorical, *numerical)
        if col in reference and col in current and reference[col].notna().any()
    ]
    cats = [col for col in usable if col in categorical]
    nums = [col for col in usable if col in numerical]
    definition = DataDefinition(categorical_columns=cats, numerical_columns=nums)
    thresholds = {col: config.threshold(col) for col in usable}
    # fixed distances (not Evidently's sample-size dependent choice of p-value tests), so a
    # threshold means the same on a quiet day and on a busy one
    preset = DataDriftPreset(
        columns=usable,
        cat_method="jensenshannon",
        num_method="wasserstein",
        per_column_threshold=thresholds,
        threshold=config.default,
    )
    logger.info("%s: Evidently drift report over %s", name, ", ".join(usable))
    section.snapshot = Report([preset]).run(
        Dataset.from_pandas(current[usable].reset_index(drop=True), data_definition=definition),
        Dataset.from_pandas(reference[usable].reset_index(drop=True), data_definition=definition),
    )
    for result in section.snapshot.dict()["metrics"]:
        column = result.get("config", {}).get("column")
        if column in thresholds:
            distance = float(result["value"])
            section.columns[column] = {
                "method": "jensenshannon" if column in cats else "wasserstein",
                "distance": round(distance, 4),
                "threshold": thresholds[column],
                "drifted": bool(distance >= thresholds[column]),
            }
    drifted = sum(col["drifted"] for col in section.columns.values())
    section.drifted = drifted >= config.min_drifted
    return section


def movers(reference: pd.Series, current: pd.Series, n: int = MOVERS) -> dict[str, list]:
    """The values whose share grew or shrank the most (ratio), among those holding at least
    0.5% of either window: what an operator looks at first when a column drifts."""
    ref = reference.value_counts(normalize=True)
    cur = current.value_counts(normalize=True)
    index = ref.index.union(cur.index)
    ref, cur = ref.reindex(index, fill_value=0.0), cur.reindex(index, fill_value=0.0)
    keep = (ref >= MIN_MOVER_SHARE) | (cur >= MIN_MOVER_SHARE)
    floor = 0.5 / max(len(reference), 1)  # half an event: a ratio, not a division by zero
    ratio = ((cur + floor) / (ref + floor))[keep].sort_values()

    def rows(values: pd.Series) -> list[dict[str, Any]]:
        return [
            {
                "value": str(key),
                "reference_share": round(float(ref[key]), 4),
                "current_share": round(float(cur[key]), 4),
                "ratio": round(float(value), 2),
            }
            for key, value in values.items()
        ]

    return {"grew": rows(ratio[::-1].head(n)), "shrank": rows(ratio.head(n))}


def list_quality(
    slots: pd.DataFrame, popularity: pd.Series, catalogue_size: int
) -> dict[str, float]:
    """Coverage, novelty (as offline evaluation defines them, recsys.metrics.summarise) and the
    head items' share of the recommended slots."""
    k = int(slots[metrics.RANK].max())
    firsts = slots[slots[metrics.RANK] == 1][[metrics.REQUEST_ID, c.ITEM_ID]]
    # coverage and novelty do not depend on the targets: any one per request will do
    summary = metrics.summarise(
        slots[[metrics.REQUEST_ID, c.ITEM_ID, metrics.RANK]],
        firsts,
        ks=(k,),
        catalogue_size=catalogue_size,
        item_popularity=popularity,
    )
    return {
        "requests": int(slots[metrics.REQUEST_ID].nunique()),
        "k": k,
        "coverage": round(summary[f"coverage@{k}"], 4),
        "novelty": round(summary[f"novelty@{k}"], 4),
        "head_share": round(float((slots["popularity"] == "head").mean()), 4),
    }


def _sample_requests(slots: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    requests = slots[metrics.REQUEST_ID].unique()
    if len(requests) <= n:
        return slots
    chosen = np.random.default_rng(seed).choice(requests, size=n, replace=False)
    return slots[slots[metrics.REQUEST_ID].isin(chosen)]


def recommendations_section(
    reference: pd.DataFrame | None,
    current: pd.DataFrame,
    popularity: pd.Series,
    catalogue_size: int,
    limits: Recommendations,
    seed: int,
) -> Section:
    """The served lists' coverage, novelty and popularity bias, against the limits; coverage
    is compared on as many requests in each window (it grows with the number of requests)."""
    section = Section("recommendations")
    if current.empty:
        section.skipped = "no list served in the current window"
        return section
    current_quality = list_quality(current, popularity, catalogue_size)
    section.figures["current"] = current_quality
    reasons = []
    if current_quality["head_share"] > limits.max_head_share:
        reasons.append(
            f"head items fill {current_quality['head_share']:.0%} of the slots "
            f"(max {limits.max_head_share:.0%})"
        )
    if reference is not None and not reference.empty:
        n = min(reference[metrics.REQUEST_ID].nunique(), current[metrics.REQUEST_ID].nunique())
        ref_q = list_quality(_sample_requests(reference, n, seed), popularity, catalogue_size)
        cur_q = list_quality(_sample_requests(current, n, seed), popularity, catalogue_size)
        section.figures["reference"] = list_quality(reference, popularity, catalogue_size)
        ratio = cur_q["coverage"] / ref_q["coverage"] if ref_q["coverage"] else 1.0
        section.figures["coverage_ratio"] = round(ratio, 4)
        section.figures["coverage_compared_on_requests"] = n
        if ratio < limits.min_coverage_ratio:
            reasons.append(
                f"coverage fell to {ratio:.0%} of the reference's (min "
                f"{limits.min_coverage_ratio:.0%})"
            )
    section.rows = (0 if reference is None else len(reference), len(current))
    section.figures["reasons"] = reasons
    section.drifted = bool(reasons)
    return section


@dataclass
class DriftResult:
    reference: Window
    current: Window
    sections: list[Section]

    @property
    def drifted(self) -> bool:
        return any(section.drifted for section in self.sections)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": "drift" if self.drifted else "ok",
            "reference": self.reference.to_dict(),
            "current": self.current.to_dict(),
            **{section.name: section.to_dict() for section in self.sections},
        }


def detect_drift(
    lake: Lake,
    reference: Window,
    current: Window,
    thresholds: Thresholds,
    served_reference: pd.DataFrame | None = None,
    served_current: pd.DataFrame | None = None,
) -> DriftResult:
    """Every section for two windows; ``served_*`` are the service's logged answers in each
    window (serving.feedback.FeedbackLog.served), None or empty when there are none."""
    ref_events, cur_events = lake.window(reference), lake.window(current)
    logger.info(
        "windows: reference %s (%d events), current %s (%d events)",
        reference.label,
        len(ref_events),
        current.label,
        len(cur_events),
    )
    features = compare(
        "features",
        feature_frame(ref_events),
        feature_frame(cur_events),
        thresholds.features,
        FEATURE_CATEGORICAL,
        FEATURE_NUMERICAL,
        thresholds.min_rows,
    )
    if not features.skipped:
        features.figures["movers"] = {
            column: movers(ref_events[column], cur_events[column])
            for column in ("department", "category")
        }
    sections = [features]

    # item popularity as the model learnt it: the reference window's interactions, or, when
    # the reference is a window of the served log after the lake ends, the lake's last weeks
    known = ref_events
    popularity_from = f"lake events {reference.label}"
    if len(known) < thresholds.min_rows:
        known = lake.last(POPULARITY_DAYS)
        popularity_from = f"the lake's last {POPULARITY_DAYS} days"
    bands = popularity_bands(known, lake.catalogue_size, thresholds.recommendations.head_share)
    popularity = known[c.ITEM_ID].value_counts()
    has_current = served_current is not None and not served_current.empty
    has_reference = served_reference is not None and not served_reference.empty
    if not has_current:
        skipped = "the service logged no answer in the current window"
        sections.append(Section("predictions", skipped=skipped))
        sections.append(Section("recommendations", skipped=skipped))
    else:
        cur_slots = slot_frame(served_current, lake, bands)
        if has_reference:
            ref_slots = slot_frame(served_reference, lake, bands)
            against = "served lists of the reference window"
        else:
            ref_slots = _with_facts(ref_events[[c.ITEM_ID]], lake, bands)
            against = "items interacted with in the reference window (no served list then)"
        predictions = compare(
            "predictions",
            ref_slots,
            cur_slots,
            thresholds.predictions,
            PREDICTION_CATEGORICAL,
            PREDICTION_NUMERICAL if has_reference else ("price",),
            thresholds.min_rows,
        )
        predictions.figures["reference_is"] = against
        predictions.figures["popularity_from"] = popularity_from
        if not has_reference and not predictions.skipped:
            # lists are not meant to look like interactions (they lean to what users buy, not
            # what they browse): shown to the operator, judged only against earlier lists
            predictions.figures["judged"] = False
            predictions.drifted = False
        sections.append(predictions)
        sections.append(
            recommendations_section(
                ref_slots if has_reference else None,
                cur_slots,
                popularity,
                lake.catalogue_size,
                thresholds.recommendations,
                thresholds.seed,
            )
        )
    if all(section.skipped for section in sections):
        raise RecsysError(
            "nothing to compare: "
            + "; ".join(f"{section.name}: {section.skipped}" for section in sections)
        )
    return DriftResult(reference, current, sections)


def write_reports(result: DriftResult, out_dir: Path) -> list[Path]:
    """One Evidently HTML report per compared section, and ``summary.json``."""
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for section in result.sections:
        if section.snapshot is not None:
            path = out_dir / f"{section.name}.html"
            section.snapshot.save_html(str(path))
            written.append(path)
    summary = out_dir / "summary.json"
    summary.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    written.append(summary)
    return written


def summary_text(result: DriftResult) -> str:
    """What the operator reads in the terminal: verdict, then each section's columns."""
    lines = [
        f"drift check: current {result.current.label} against reference "
        f"{result.reference.label}: {'DRIFT' if result.drifted else 'no drift'}"
    ]
    for section in result.sections:
        if section.skipped:
            lines.append(f"  {section.name}: skipped ({section.skipped})")
            continue
        state = "DRIFT" if section.drifted else "ok"
        if section.figures.get("judged") is False:
            state = f"not judged: reference is {section.figures['reference_is']}"
        lines.append(
            f"  {section.name}: {state} (rows: reference {section.rows[0]:,}, "
            f"current {section.rows[1]:,})"
        )
        for column, figures in section.columns.items():
            mark = "  <- beyond threshold" if figures["drifted"] else ""
            lines.append(
                f"    {column:<12} {figures['method']:<13} {figures['distance']:.4f}"
                f" (threshold {figures['threshold']}){mark}"
            )
        for window in ("reference", "current"):
            quality = section.figures.get(window)
            if isinstance(quality, dict):
                lines.append(
                    f"    {window}: {quality['requests']:,} lists of up to {quality['k']}, "
                    f"coverage {quality['coverage']:.4f}, novelty {quality['novelty']:.2f}, "
                    f"head share {quality['head_share']:.2%}"
                )
        if "coverage_ratio" in section.figures:
            lines.append(
                f"    coverage ratio {section.figures['coverage_ratio']:.2f} on "
                f"{section.figures['coverage_compared_on_requests']:,} requests each"
            )
        for reason in section.figures.get("reasons", []):
            lines.append(f"    {reason}")
        for column, moved in section.figures.get("movers", {}).items():
            grew = ", ".join(f"{m['value']} x{m['ratio']}" for m in moved["grew"][:3])
            shrank = ", ".join(f"{m['value']} x{m['ratio']}" for m in moved["shrank"][:3])
            lines.append(f"    {column} grew: {grew}")
            lines.append(f"    {column} shrank: {shrank}")
    return "\n".join(lines)
