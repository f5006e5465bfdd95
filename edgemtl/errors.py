"""The one exception type a user can cause, and the wording helper its messages share. The CLI prints the
message, never a traceback. Stdlib only: the runtime, the recipe and the exporter all import it."""
import difflib


class EdgemtlError(Exception):
    """A problem the user can fix (recipe, data, run directory, input). The message names the place."""

    exit_code = 2  # what the CLI exits with

    def __init__(self, *messages: str):
        self.messages = [m for m in messages if m]
        super().__init__("\n".join(self.messages))


class NotDeployableError(EdgemtlError):
    """Requested artifacts failed the parity gate (exit code 3): `export` when any did, `run` when a requested model
    has no deployable artifact. output: what the command prints before the error lines (the export table)."""

    exit_code = 3

    def __init__(self, *messages: str, output: str | None = None):
        super().__init__(*messages)
        self.output = output


def did_you_mean(word: str, options) -> str:
    """" (did you mean 'x'?)" for the closest option, or "" when none is close."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
