"""Entry points: what dvc.yaml and a user run, one short main each. The library is medical_r1/."""
