"""The `linux` dataplane driver: netlink routes, workload interface settings
and an nftables table of our own, in the agent's network namespace."""
