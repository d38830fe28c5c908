"""The recommender shared by training and serving: candidate sources, ranker, model bundle."""
