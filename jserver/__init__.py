"""jserver: a multi-tenant Jupyter Server built on Django and Channels."""

__version__ = "0.1.0"
