"""Local persistent storage of a komrade node (SQLite): blobs, index slots, signed records, node state."""

from komrade_dht.storage.store import Store, StoreLimits, StoreStats, blob_id, ids_digest

__all__ = ["Store", "StoreLimits", "StoreStats", "blob_id", "ids_digest"]
