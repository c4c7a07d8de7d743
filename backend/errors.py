"""The one root error of the backend."""


class BackendError(Exception):
    """Root of every error the backend raises on purpose."""


class ConfigError(BackendError):
    """The backend's configuration is incomplete or unsafe (e.g. a default secret outside demo)."""


class StoreError(BackendError):
    """The database refused, or is in a state the backend cannot work with."""
