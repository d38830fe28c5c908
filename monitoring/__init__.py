"""Monitoring after deployment: drift of what the shop and the service see against the
training reference (``drift``), online performance from feedback (``performance``), and the
thresholds that turn either into an alert (``thresholds``, ``thresholds.yaml``)."""
