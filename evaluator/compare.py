"""PLACEHOLDER: replaced by its owner during this session."""

import click


@click.command("compare")
def compare_command():
    """(not built yet)"""
    raise click.ClickException("'compare' is not built yet")
