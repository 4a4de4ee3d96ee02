"""typha: a fan-out cache between etcd and thousands of node agents."""

__version__ = "0.1.0"
