"""carecall's benchmarks: figures beside baselines measured in the same run (not tests)."""
