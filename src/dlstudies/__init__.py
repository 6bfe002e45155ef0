"""dlstudies: the classic experiments of deep-learning fundamentals as multi-seed studies.

    import dlstudies
    r = dlstudies.run("optimizers", scale="smoke", seeds=2, out="demo")
    r.runs      # pandas: study, condition, seed, metric, value, converged, diverged
    r.claims    # pandas: one row per claim with its verdict, effect and CI
    dlstudies.load("demo").runs  # the same table, from disk
"""

__version__ = "0.1.0"

from dlstudies.errors import UsageError  # noqa: E402

_API = ("Results", "load", "run")
__all__ = [*_API, "UsageError", "__version__"]


def __getattr__(name: str):
    # The API imports pandas and matplotlib; `dlstudies list` and worker processes need neither.
    if name in _API:
        from dlstudies import api

        return getattr(api, name)
    raise AttributeError(f"module 'dlstudies' has no attribute '{name}'")
