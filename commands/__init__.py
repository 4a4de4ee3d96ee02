"""Composition roots: the `typha` and `felix-agent` commands and the demo.
The only code that may import both the server and the agent."""

import os

# Read by gRPC when it is first imported, hence here, before any command
# module imports it.  The demo starts processes (etcd, agent workers) while
# gRPC's threads run; each child execs at once, so gRPC's fork handlers have
# nothing to protect, and with them on, each fork logs "skipping fork()
# handlers".
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
