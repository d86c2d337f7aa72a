"""Torch side of qdistill: Q-networks, pure losses and targets, learners, checkpoints.

Imports neither Ray nor Redis.
"""
