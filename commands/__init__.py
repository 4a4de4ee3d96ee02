"""Composition roots: the `typha` and `felix-agent` commands and the demo.
The only code that may import both the server and the agent."""
