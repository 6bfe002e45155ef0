"""Errors a user can fix: the CLI prints their one line and exits with code 2."""


class UsageError(ValueError):
    """Bad input from the user: the message names the problem and the valid choices."""
