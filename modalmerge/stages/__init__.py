"""Workflow stages: thin glue between the ``modalmerge`` CLI (one subcommand per
Snakemake rule) and the library modules that do the work.

A stage function takes explicit paths and one config section, validates what it
reads, and writes its outputs atomically. The science lives in ``data/``,
``models/``, ``training/``, ``evaluation/`` and ``viz/``.
"""
