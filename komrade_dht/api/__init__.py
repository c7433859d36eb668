"""The local node API: the one path from any interface (the app, the CLI, scripts) to a user's node.

``server.ApiServer`` serves a :class:`~komrade_dht.service.UserService` over HTTP/JSON on 127.0.0.1 with a bearer
token; ``client.ApiClient`` (async) and ``client.SyncApiClient`` find a running node through its data directory
and talk to it. Every route is described in ``openapi.json`` in this package.
"""

from .client import ApiClient, ApiError, NodeNotRunning, SyncApiClient

__all__ = ["ApiClient", "ApiError", "NodeNotRunning", "SyncApiClient"]
