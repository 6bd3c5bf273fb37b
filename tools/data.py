"""PLACEHOLDER: replaced by its owner during this session."""

import click


@click.group("data")
def data_group():
    """(not built yet)"""
