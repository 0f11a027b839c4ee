"""The ``carecall`` command: a thin dispatcher wiring the gate, signalling and the peer."""
