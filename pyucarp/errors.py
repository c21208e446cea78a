"""The one exception family pyucarp raises."""


class UcarpError(Exception):
    """Root of every error pyucarp raises on purpose."""


class ConfigError(UcarpError):
    """A bad command line or configuration: reported in one line, exit status 1."""


class RuntimeFailure(UcarpError):
    """A failure after the configuration checks (interface, sockets): exit status 2."""
