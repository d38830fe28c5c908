"""Canary releases: the controller, its statistics, the A/B report and the traffic simulator."""
