"""Node ids that cost work to place: S/Kademlia's static crypto puzzle, without the signatures. Pure, no I/O.

A node holds a 32-byte *proof* ``x``. Its id is ``BLAKE2b-160(x)`` and ``x`` is valid when ``BLAKE2b-256(x)``
(another personalisation) starts with ``bits`` zero bits. Nobody can choose an id: to get one next to a given slot,
an attacker must mint valid proofs until one lands there, 2^bits hashes each. Among N nodes the k closest to a slot
are about log2(N/k) bits from it, so placing 8 ids closer than the honest holders costs ~8 x N/k x 2^bits hashes,
growing with the network; an honest node pays 2^bits once (its proof is kept with its store).

A node proves its id by answering a ping with ``x``; a contact enters a routing table, and a lookup's answer, only
after that (:meth:`~komrade_dht.node.protocol.KomradeProtocol.proven`). With ``bits == 0`` (test networks that
place ids on purpose) a bare 20-byte id is accepted as its own proof.
"""

from __future__ import annotations

import hashlib
import os

PROOF_LEN = 32


def node_id(proof: bytes) -> bytes:
    """The 20-byte node id a proof stands for."""
    return hashlib.blake2b(proof, digest_size=20, person=b"komrade/nodeid").digest()


def _work(proof: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(proof, digest_size=32, person=b"komrade/idwork").digest(), "big")


def is_valid(proof: bytes, bits: int) -> bool:
    """Whether ``proof`` is a 32-byte proof whose work hash starts with ``bits`` zero bits."""
    return isinstance(proof, bytes) and len(proof) == PROOF_LEN and _work(proof) >> (256 - bits) == 0


def mint(bits: int) -> bytes:
    """A fresh valid proof (2^bits BLAKE2b evaluations on average: ~0.15 s at 16 bits here)."""
    base = bytearray(os.urandom(PROOF_LEN))
    counter = 0
    while True:
        base[-8:] = counter.to_bytes(8, "big")
        candidate = bytes(base)
        if _work(candidate) >> (256 - bits) == 0:
            return candidate
        counter += 1


def id_from_answer(answer: object, bits: int) -> bytes | None:
    """The node id a ping answer proves, or None: a valid proof, or (only when ``bits == 0``) a bare 20-byte id."""
    if isinstance(answer, bytes) and len(answer) == PROOF_LEN and is_valid(answer, bits):
        return node_id(answer)
    if bits == 0 and isinstance(answer, bytes) and len(answer) == 20:
        return answer
    return None
