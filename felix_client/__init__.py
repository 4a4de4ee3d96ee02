"""The `felix-agent` node agent: configuration, the calculation graph
(`calc/`), the agent process and its metrics.  The client library it syncs
with lives in `syncclient`; its names stay importable from here."""

import syncclient
from syncclient import *  # noqa: F403  (the library's names, importable here too)

# The client library's base error, by the name it had here.
FelixClientError = syncclient.SyncClientError

__all__ = [*syncclient.__all__, "FelixClientError"]
