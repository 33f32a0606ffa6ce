"""What every command may raise: a user-facing error, printed as one line with exit code 2."""

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""
