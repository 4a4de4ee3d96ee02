"""The server's output side: the asyncio listener that streams the cache to
agents, and the rebalancer that keeps load even across replicas."""
