"""The model registry's lifecycle (PLATFORM.md section 5): stages as MLflow aliases, offline
gates against production, an append-only audit of every transition, and the desired state
file that a pull request edits (plan) and a merge applies (apply)."""
