"""Errors a user can act on: the CLI prints their message and exits non-zero,."""


class RecsysError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class DataFileError(RecsysError):
    """An unusable data file: the run stops, naming file, column and expectation."""

    def __init__(
        self, path: object, problem: str, column: str | None = None, expected: str | None = None
    ) -> None:
        self.path = str(path)
        self.column = column
        self.problem = problem
        self.expected = expected
        parts = [f"{self.path}"]
        if column is not None:
            parts.append(f"column '{column}'")
        message = ": ".join([", ".join(parts), problem])
        if expected:
            message += f" (expected {expected})"
        super().__init__(message)
