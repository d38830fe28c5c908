"""The item and user vocabularies of a model: ids to row numbers, and the catalogue facts.

Every source indexes items by the same row numbers, so a candidate found by one source can be
scored by all the others. Products unknown at training can be added later (new products).
"""

import logging

import numpy as np
import pandas as pd

from recsys import columns as c

logger = logging.getLogger(__name__)

NEVER = np.float64(-np.inf)
CATALOG_COLUMNS = (c.CATEGORY, c.BRAND, c.ATTRIBUTES, c.PRICE)


# ids looked up one by one rather than through an index built for them
FEW = 8


class Vocabulary:
    """A fixed order of string ids with a fast id -> row lookup; grows only at the end."""

    def __init__(self, ids: np.ndarray | list[str]) -> None:
        self.ids = np.asarray(ids, dtype=object)
        self._rows = pd.Index(self.ids)
        if not self._rows.is_unique:
            raise ValueError("vocabulary ids must be unique")

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, ids: object) -> np.ndarray:
        """Row number of each id, -1 for unknown ids."""
        given = np.asarray(ids, dtype=object)
        if len(given) <= FEW:  # (a request's user or session items: no index to build)
            return np.fromiter(map(self._row, given), np.intp, len(given))
        return self._rows.get_indexer(pd.Index(given))

    def _row(self, id_: object) -> int:
        try:
            found = self._rows.get_loc(id_)
        except (KeyError, TypeError, pd.errors.InvalidIndexError):
            return -1
        return found if isinstance(found, int) else -1

    def add(self, ids: object) -> np.ndarray:
        """Append the ids not yet known; returns the rows of all ``ids``."""
        given = np.asarray(ids, dtype=object)
        unique = pd.unique(given)
        new = unique[self.rows(unique) < 0]
        if len(new):
            self.ids = np.concatenate([self.ids, new])
            self._rows = pd.Index(self.ids)
        return self.rows(given)


class Catalog:
    """Items with what the sources and rules need of each: category, brand, price, launch."""

    def __init__(self, items: Vocabulary, facts: pd.DataFrame) -> None:
        self.items = items
        self.facts = facts.reset_index(drop=True)

    @classmethod
    def build(cls, products: pd.DataFrame, events: pd.DataFrame) -> "Catalog":
        """Every product of the catalogue and every item seen in events, in a stable order."""
        ids = pd.unique(pd.concat([products[c.ITEM_ID].astype(str), events[c.ITEM_ID].astype(str)]))
        ids = np.sort(ids.astype(object))
        catalog = cls(Vocabulary(ids), _empty_facts(len(ids)))
        catalog.update(products)
        return catalog

    def __len__(self) -> int:
        return len(self.items)

    def update(self, products: pd.DataFrame) -> np.ndarray:
        """Add new products and refresh the facts of known ones; returns their rows."""
        if c.ITEM_ID not in products:
            raise ValueError(f"products need an '{c.ITEM_ID}' column")
        rows = self.items.add(products[c.ITEM_ID].astype(str))
        grow = len(self.items) - len(self.facts)
        if grow > 0:
            self.facts = pd.concat([self.facts, _empty_facts(grow)], ignore_index=True)
        for column in CATALOG_COLUMNS:
            if column in products:
                self.facts.loc[rows, column] = products[column].to_numpy()
        if c.CREATED_AT in products:
            created = pd.to_datetime(products[c.CREATED_AT], utc=True)
            epoch = (created - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
            self.facts.loc[rows, "created_epoch"] = epoch.fillna(-np.inf).to_numpy()
        if c.IN_STOCK in products:
            stock = products[c.IN_STOCK].astype("boolean").fillna(True)
            self.facts.loc[rows, c.IN_STOCK] = stock.to_numpy(dtype=bool)
        return rows

    @property
    def created(self) -> np.ndarray:
        """Launch instant of each item (epoch seconds; -inf when unknown: always available)."""
        return self.facts["created_epoch"].to_numpy(dtype=np.float64)


def _empty_facts(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            c.CATEGORY: pd.Series([None] * n, dtype=object),
            c.BRAND: pd.Series([None] * n, dtype=object),
            c.ATTRIBUTES: pd.Series([None] * n, dtype=object),
            c.PRICE: np.full(n, np.nan),
            "created_epoch": np.full(n, NEVER),
            c.IN_STOCK: np.ones(n, dtype=bool),
        }
    )
