"""The edgewatch process: config, REST API, CLI and systemd glue."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgewatch")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
