"""Commands of the training-side steps (export, build), registered by leafsub.cli."""

from .export import card_command, export_command
from .build import build_command

COMMANDS = [export_command, card_command, build_command]
