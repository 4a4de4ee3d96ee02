"""typha: the fan-out server.  Datastore input (`typha.datastore`), fan-out
output (`typha.fanout`), and the process that wires them (`typha.app`)."""
