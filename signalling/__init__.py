"""carecall's signalling server: token-gated two-party rooms over WebSocket at ``/ws``."""
