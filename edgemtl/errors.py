"""The one exception type a user can cause. The CLI prints its message, never a traceback."""


class EdgemtlError(Exception):
    """A problem the user can fix (recipe, data, run directory, input). The message names the place."""

    def __init__(self, *messages: str):
        self.messages = [m for m in messages if m]
        super().__init__("\n".join(self.messages))
