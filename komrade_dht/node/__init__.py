"""The DHT node: kademlia and rpcudp subclassed and hardened (see protocol.py for the list of overrides)."""

from .server import KomradeNode, NodeConfig

__all__ = ["KomradeNode", "NodeConfig"]
