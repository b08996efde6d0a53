"""exim_py: a mail transfer agent that reads Exim's configuration and behaves as Exim does."""

__version__ = "0.1.0"

#: The Exim release whose behaviour exim_py follows (replies, formats, -bV).
EXIM_COMPAT_VERSION = "4.96"
