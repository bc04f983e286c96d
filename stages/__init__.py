"""The pipeline's stages (prepare, train, evaluate, report) and the library they share."""


class UserError(Exception):
    """A problem the user can fix (a param, a file, a row); stages print its one-sentence message and exit 2."""
