"""User-facing errors: each carries one line that the CLI prints and the editor shows."""


class MorphError(Exception):
    """An error whose message is fit to show a user as it is (one line, no traceback)."""

    exit_code = 2


class ModelLoadError(MorphError):
    """The model, tokenizer or SAE could not be loaded."""


class InputError(MorphError):
    """Bad input from the user: a file, an offset, a feature id, an option."""
