"""PLACEHOLDER: replaced by its owner during this session."""

import click


@click.command("demo")
def demo_command():
    """(not built yet)"""
    raise click.ClickException("'demo' is not built yet")
