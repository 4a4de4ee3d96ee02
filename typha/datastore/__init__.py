"""The server's input side: the etcd client, the syncer that keeps the
snapshot cache following etcd, and the periodic source check."""
