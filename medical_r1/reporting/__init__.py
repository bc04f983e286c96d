"""What a person reads: charts, the markdown report, the model card."""
