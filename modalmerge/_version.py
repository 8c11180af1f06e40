"""The package version, in a module of its own: stages that record it (dataset
descriptions) import this and nothing else of the package."""

__version__ = "0.1.0"
