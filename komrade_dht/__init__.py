"""komrade_dht: an encrypted social network on a Kademlia DHT, with no server in the middle."""

__version__ = "0.1.0"
