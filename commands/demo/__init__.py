"""`typha demo`: an embedded etcd (`etcd`), a seeded sample cluster with churn
(`cluster`), the server and a fleet of agents in one process (`run`)."""
