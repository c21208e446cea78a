"""pyucarp: a drop-in replacement for the ucarp CARP daemon."""

__version__ = "0.1.0"
