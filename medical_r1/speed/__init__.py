"""Measuring speed and memory around the same recipe the pipeline runs (stages/bench.py): training steady state,
decoding, and the FLOP and bandwidth models they are compared with."""
