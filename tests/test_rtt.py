"""Retransmission timed from measured round trips (issue 12): the sans-IO estimator (RFC 6298), without sockets.
The protocol's use of it on real sockets (Karn's rule, back-off) is in tests/test_node_hardening.py."""

from __future__ import annotations

import pytest

from komrade_dht.node.rtt import RttEstimator

PEER, OTHER = ("127.0.0.1", 1000), ("127.0.0.1", 2000)


def test_a_peer_never_measured_gets_the_configured_schedule() -> None:
    rtt = RttEstimator(max_rto=2.0 / 3, min_rto=0.2)
    resend, timeout = rtt.schedule(PEER, 2)
    assert resend == pytest.approx([2 / 3, 4 / 3]) and timeout == pytest.approx(2.0)
    assert not rtt.measured(PEER) and rtt.srtt(PEER) is None


def test_samples_follow_rfc_6298_and_are_clamped() -> None:
    rtt = RttEstimator(max_rto=1.0, min_rto=0.2, granularity=0.01)
    rtt.sample(PEER, 0.1)  # first sample: srtt = r, rttvar = r / 2, rto = r + 4 * r / 2
    assert rtt.srtt(PEER) == pytest.approx(0.1) and rtt.rto(PEER) == pytest.approx(0.3)
    rtt.sample(PEER, 0.1)  # rttvar = 3/4 * 0.05, srtt unchanged
    assert rtt.rto(PEER) == pytest.approx(0.1 + 4 * 0.0375)
    for _ in range(100):
        rtt.sample(PEER, 0.001)  # a fast peer: never below min_rto (event-loop stalls must not pass for loss)
    assert rtt.rto(PEER) == pytest.approx(0.2)
    resend, timeout = rtt.schedule(PEER, 2)
    assert resend == pytest.approx([0.2, 0.4]) and timeout == pytest.approx(0.6)
    for _ in range(20):
        rtt.sample(OTHER, 5.0)  # a slow one: never above max_rto (the old fixed schedule)
    assert rtt.rto(OTHER) == pytest.approx(1.0)
    assert rtt.rto(PEER) == pytest.approx(0.2), "peers are measured separately"


def test_a_peer_never_measured_gets_the_interval_of_all_samples_and_backs_off_alone() -> None:
    rtt = RttEstimator(max_rto=1.0, min_rto=0.1)
    for port in range(20):
        rtt.sample(("127.0.0.1", port), 0.05)
    fresh = ("127.0.0.1", 9999)
    assert not rtt.measured(fresh) and rtt.rto(fresh) == pytest.approx(rtt.rto(("127.0.0.1", 0)), rel=0.5)
    assert rtt.rto(fresh) < 1.0
    rtt.timed_out(fresh)  # farther than the rest, or gone: its own interval doubles, nobody else's
    assert rtt.rto(fresh) == pytest.approx(2 * rtt.rto(("127.0.0.1", 12345)))
    assert not rtt.measured(fresh)
    rtt.sample(fresh, 0.3)
    assert rtt.measured(fresh) and rtt.srtt(fresh) == pytest.approx(0.3)


def test_a_timeout_doubles_the_interval_until_the_next_clean_sample() -> None:
    rtt = RttEstimator(max_rto=1.0, min_rto=0.1)
    rtt.timed_out(PEER)  # nothing measured at all: every peer already has max_rto
    assert not rtt.measured(PEER) and rtt.rto(PEER) == pytest.approx(1.0)
    for _ in range(50):
        rtt.sample(PEER, 0.01)
    base = rtt.rto(PEER)
    rtt.timed_out(PEER)
    assert rtt.rto(PEER) == pytest.approx(2 * base)
    for _ in range(10):
        rtt.timed_out(PEER)
    assert rtt.rto(PEER) == pytest.approx(1.0), "bounded by max_rto"
    rtt.sample(PEER, 0.01)
    assert rtt.rto(PEER) == pytest.approx(base, rel=0.2)


def test_memory_is_bounded_and_bad_bounds_are_refused() -> None:
    rtt = RttEstimator(max_rto=1.0, capacity=3)
    for port in range(10):
        rtt.sample(("127.0.0.1", port), 0.01)
    assert len(rtt) == 3 and rtt.measured(("127.0.0.1", 9)) and not rtt.measured(("127.0.0.1", 0))
    with pytest.raises(ValueError, match="must be positive"):
        RttEstimator(max_rto=0.0)
    assert RttEstimator(max_rto=0.1, min_rto=0.2).rto(PEER) == pytest.approx(0.1), "min_rto never above max_rto"
