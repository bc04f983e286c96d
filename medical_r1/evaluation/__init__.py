"""Scoring generations: metrics shared by the tasks and the stages."""
