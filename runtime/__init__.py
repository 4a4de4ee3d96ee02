"""Process plumbing shared by the server, the agent and the commands: the
log format and rate-limited logging, histograms and their Prometheus
families, TLS contexts that reload, flags read from the environment and
their help text.  Nothing here knows the wire protocol or Calico; unlike the
protocol core, this package may read the clock and touch files."""
