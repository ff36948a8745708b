"""The package version, in a module of its own so that the stages (learning writes it into
every concept) can read it without importing the package face above them."""

__version__ = "0.2.0"
