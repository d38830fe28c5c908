"""Candidate sources: each proposes items for a batch of requests and scores any candidate.

A source has ``name``, ``propose(batch, exclusions) -> req, item, score`` and
``features(batch, pairs) -> DataFrame`` (one column per feature, row-aligned with ``pairs``).
"""
