"""The errors a user can fix from the message alone.

`flaseg.main` (and `flaseg.convert`'s CLI) print these as one line and exit 2; every other
exception is a bug in flaseg and shows its traceback. Raise them where input is checked, with
the file, key or value in the message.
"""


class UserError(Exception):
  """Bad input: a config value, a file, a checkpoint or data that cannot work."""


class ConfigError(UserError, ValueError):
  """A config key or value that cannot work (names the key and the value)."""


class NotFoundError(UserError, FileNotFoundError):
  """A file or folder the config names does not exist (names the path)."""


class DivergedError(UserError, FloatingPointError):
  """Training produced a non-finite loss (names the step; e.g. a learning rate too high)."""
