"""dlstudies: the classic experiments of deep-learning fundamentals as multi-seed studies."""

__version__ = "0.1.0"
