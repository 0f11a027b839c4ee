"""carecall's headless aiortc peer, for QA, CI and our own end-to-end tests."""

from peer.client import Peer, PeerError, PeerStats

__all__ = ["Peer", "PeerError", "PeerStats"]
