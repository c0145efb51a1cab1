"""User-facing errors: each carries one line that the CLI prints and the editor shows."""


class MorphError(Exception):
    """An error whose message is fit to show a user as it is (one line, no traceback)."""

    exit_code = 2


class ModelLoadError(MorphError):
    """The model, tokenizer or SAE could not be loaded."""


class InputError(MorphError):
    """Bad input from the user: a file, an offset, a feature id, an option."""


class NoFeatureMatches(InputError):
    """No feature of the SAE matches the writer's words (morph.features.concepts.concepts_for_words): a rewrite
    can still go by the words alone (morph.features.steering.SteerRequest.by_words)."""


class ServerError(MorphError):
    """The engine server (`morph serve`) refused a request or answered out of the protocol."""


class ServerUnavailable(ServerError):
    """The engine server cannot be reached now (down, restarting, too slow): try again later."""


class ServerRefused(ServerError):
    """The engine server refused this client's secret key."""


class TextNotHeld(ServerError):
    """The server does not hold the text an edit was made against: send the whole text."""


class LoadCancelled(MorphError):
    """The editor closed while its engine was loading (or waiting for its server)."""


def one_line(err: BaseException) -> str:
    """What to show a user for `err`: a MorphError's own message; anything else as its type and the first line
    of its message (at most 160 characters), never a traceback."""
    if isinstance(err, MorphError):
        return str(err)
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:160]}" if lines else type(err).__name__
