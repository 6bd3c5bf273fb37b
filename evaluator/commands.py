"""Commands of the evaluation step (evaluate, compare), registered by leafsub.cli."""

from .evaluate import evaluate_command
from .compare import compare_command

COMMANDS = [evaluate_command, compare_command]
