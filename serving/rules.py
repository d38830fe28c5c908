"""Business rules as a mask over the catalogue: what a request may be shown at all.

The mask goes into candidate generation (``Exclusions.allowed``), so every source draws its
proposals from allowed items only and a narrow filter (one category, a low price cap) still
fills the list. Launch dates and the no-rebuy policy are the model's own exclusions.
"""

import logging
from collections import OrderedDict

import numpy as np

from recommender.catalog import Catalog
from recsys import columns as c
from serving.schemas import RequestError

logger = logging.getLogger(__name__)
MAX_CACHED_CATEGORIES = 2_000


def split_attributes(value: object) -> list[str]:
    if not isinstance(value, str) or not value:
        return []
    return [a.strip() for a in value.split(c.ATTRIBUTE_SEPARATOR) if a.strip()]


class Rules:
    """Per-catalogue indexes that make each request's mask a few vector operations."""

    def __init__(self, catalog: Catalog) -> None:
        facts = catalog.facts
        self.n_items = len(catalog)
        self.items = catalog.items
        self.in_stock = facts[c.IN_STOCK].to_numpy(dtype=bool).copy()
        self.price = facts[c.PRICE].to_numpy(dtype=np.float64)
        cats = facts[c.CATEGORY].astype(object)
        self.category = np.where(cats.notna(), cats, "").astype(str)
        self._by_attribute: dict[str, list[int]] = {}
        for row, value in enumerate(facts[c.ATTRIBUTES].to_numpy(dtype=object)):
            for attribute in split_attributes(value):
                self._by_attribute.setdefault(attribute.lower(), []).append(row)
        self._categories: OrderedDict[str, np.ndarray] = OrderedDict()

    def in_category(self, category: str) -> np.ndarray:
        """Items of a category or of any category below it (``A > B`` matches ``A > B > C``)."""
        found = self._categories.get(category)
        if found is None:
            prefix = category + c.CATEGORY_SEPARATOR
            found = (self.category == category) | np.char.startswith(self.category, prefix)
            self._categories[category] = found
            if len(self._categories) > MAX_CACHED_CATEGORIES:
                self._categories.popitem(last=False)
        return found

    def with_attributes(self, attributes: list[str]) -> np.ndarray:
        rows = [r for a in attributes for r in self._by_attribute.get(a.strip().lower(), [])]
        return np.unique(np.asarray(rows, dtype=np.int64))

    def mask(
        self,
        exclude_item_ids: list[str] | None = None,
        category: str | None = None,
        max_price: float | None = None,
        avoid_attributes: list[str] | None = None,
    ) -> np.ndarray:
        """The allowed items: in stock, and through every filter given."""
        allowed = self.in_stock.copy()
        if exclude_item_ids:
            rows = self.items.rows(exclude_item_ids)
            allowed[rows[rows >= 0]] = False
        if category:
            wanted = self.in_category(category)
            if not wanted.any():
                raise RequestError(
                    ("filters", "category"),
                    f"category {category!r} is neither a category of the catalogue nor the "
                    "start of one (e.g. 'Beauty' or 'Beauty > Skincare')",
                )
            allowed &= wanted
        if max_price is not None:
            # an item without a known price cannot be shown under a price cap
            allowed &= np.nan_to_num(self.price, nan=np.inf) <= max_price
        if avoid_attributes:
            allowed[self.with_attributes(avoid_attributes)] = False
        return allowed

    def violations(
        self, item_rows: np.ndarray, avoid_attributes: list[str], max_price: float | None
    ) -> np.ndarray:
        """Rows among ``item_rows`` that break the rules (a check on the final list)."""
        bad = ~self.in_stock[item_rows]
        if avoid_attributes:
            bad |= np.isin(item_rows, self.with_attributes(avoid_attributes))
        if max_price is not None:
            bad |= ~(np.nan_to_num(self.price[item_rows], nan=np.inf) <= max_price)
        return item_rows[bad]
