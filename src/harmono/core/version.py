"""harmono's version, in one place (``harmono.__version__`` and every saved file's ``harmono_version``)."""

__version__ = "0.1.0"
