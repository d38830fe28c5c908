"""Ingestion: a shop's files (data contract) validated into the curated lake the features read.

No row is lost: every input row is either kept in the lake or quarantined with a reason.
"""
