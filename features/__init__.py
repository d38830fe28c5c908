"""Feature engineering shared by training and serving, and the glue to the Feast feature repo.

The feature tables are computed here once, from the lake, as timestamped snapshots; the Feast
repository in ``feature_repo/`` declares them; training reads them through historical retrieval
and serving through the online store.
"""
