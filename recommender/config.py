"""What a model version is made of: its candidate sources and ranker settings.

These settings travel inside the registered model, so serving uses exactly what was trained.
"""

from typing import Literal

from pydantic import Field

from recsys import columns as c
from recsys.config import FrozenModel


class EventWeights(FrozenModel):
    """How much each event type says about interest (also the ALS confidence)."""

    view: float = 1.0
    cart: float = 3.0
    purchase: float = 5.0

    def of(self, event_type: str) -> float:
        return {c.VIEW: self.view, c.CART: self.cart, c.PURCHASE: self.purchase}.get(
            event_type, 0.0
        )


class AlsConfig(FrozenModel):
    factors: int = Field(64, ge=2)
    regularization: float = Field(0.05, gt=0)
    iterations: int = Field(15, ge=1)
    alpha: float = Field(2.0, gt=0, description="confidence = 1 + alpha * weight")
    bm25: bool = Field(True, description="BM25-weight the interaction matrix before fitting")
    half_life_days: float = Field(90.0, gt=0, description="recency decay of interactions")
    candidates: int = Field(100, ge=0)


class CovisitConfig(FrozenModel):
    follow_window: int = Field(3, ge=1, description="how many later events count as 'next'")
    max_gap_days: float = Field(30.0, gt=0, description="a later event further away is unrelated")
    neighbours: int = Field(100, ge=1, description="item-item neighbours kept per item")
    knn_neighbours: int = Field(200, ge=1, description="neighbours of the user-level item KNN")
    recent_items: int = Field(10, ge=1, description="last items of a user used as seeds")
    decay: float = Field(0.7, gt=0, le=1, description="weight of each older seed item")
    candidates: int = Field(100, ge=0)


class SessionKnnConfig(FrozenModel):
    recent_items: int = Field(10, ge=1, description="last items of a request compared")
    neighbours: int = Field(200, ge=1, description="most similar past sessions that vote")
    sessions_per_item: int = Field(
        1_000, ge=1, description="most recent sessions kept per item (the ones compared)"
    )
    recency_weight: float = Field(
        1.0, ge=0, description="the newest session's similarity counts 1 + this, the oldest 1"
    )
    candidates: int = Field(100, ge=0)


class ContentConfig(FrozenModel):
    dimensions: int = Field(64, ge=2)
    new_days: float = Field(30.0, gt=0, description="a product this young counts as new")
    candidates: int = Field(30, ge=0)
    new_candidates: int = Field(20, ge=0, description="extra candidates among new products")


class PopularityConfig(FrozenModel):
    window_days: float = Field(28.0, gt=0)
    half_life_days: float = Field(7.0, gt=0)
    candidates: int = Field(50, ge=0)
    cold_candidates: int = Field(
        50, ge=0, description="candidates for a request with no past at all (new users)"
    )


class RepeatConfig(FrozenModel):
    repurchase: Literal["auto", "allow", "forbid"] = Field(
        "auto",
        description="may items a user bought be recommended again? auto: validation decides",
    )
    auto_min_share: float = Field(
        0.02, ge=0, le=1, description="auto allows it when this share of targets are rebuys"
    )
    candidates: int = Field(30, ge=0)


class RankerConfig(FrozenModel):
    n_estimators: int = Field(400, ge=1)
    learning_rate: float = Field(0.08, gt=0)
    max_depth: int = Field(6, ge=1)
    min_child_weight: float = Field(1.0, ge=0)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    early_stopping_rounds: int = Field(30, ge=1)
    min_rounds: int = Field(
        50,
        ge=1,
        description="rounds kept unless the check requests find them worse than one tree "
        "beyond noise (early stopping on a few hundred requests stops on noise)",
    )
    negatives_per_request: int = Field(
        60, ge=1, description="training keeps the positives and this many negatives per request"
    )


class ModelConfig(FrozenModel):
    """Everything a model version needs at serving time besides its fitted arrays."""

    events: EventWeights = EventWeights()
    history_items: int = Field(30, ge=1, description="last events of a user kept for serving")
    candidates: int = Field(200, ge=1, description="candidates the ranker orders per request")
    als: AlsConfig = AlsConfig()
    covisit: CovisitConfig = CovisitConfig()
    sknn: SessionKnnConfig = SessionKnnConfig()
    content: ContentConfig = ContentConfig()
    popularity: PopularityConfig = PopularityConfig()
    repeat: RepeatConfig = RepeatConfig()
    ranker: RankerConfig = RankerConfig()
    seed: int = 42
