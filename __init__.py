"""qdistill: online, distributed distillation of DQN teachers into small student Q-networks."""

__version__ = "0.1.0"
