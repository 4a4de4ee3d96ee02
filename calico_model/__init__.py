"""The Calico domain model shared by the server and the agent: the key layout
(typed keys relative to the configured prefix), the label selector language and
the validation of datastore values.  Pure: no I/O."""
