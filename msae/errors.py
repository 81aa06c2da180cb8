"""One exception type for problems the user can fix (bad file, bad param, bad data).

The CLI prints these as a one-line error without a traceback; anything else is a bug and keeps
its traceback.
"""


class MsaeError(Exception):
    """A user-facing error: the message names the bad file, row, column or parameter."""
