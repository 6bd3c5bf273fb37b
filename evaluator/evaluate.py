"""PLACEHOLDER: replaced by its owner during this session."""

import click


@click.command("evaluate")
def evaluate_command():
    """(not built yet)"""
    raise click.ClickException("'evaluate' is not built yet")
