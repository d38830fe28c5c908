"""The request path of the BentoML service (``bentos/``): schemas, rules, engine, cache,
feedback log and model reloading, importable and testable without a server."""
