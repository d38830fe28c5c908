"""Training: split, fit candidate sources and ranker, compare with baselines, register."""
