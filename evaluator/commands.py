"""Commands of the evaluation step (evaluate, compare, runtimes), registered by leafsub.cli."""

from .evaluate import evaluate_command
from .compare import compare_command
from .runtimes import runtimes_command

COMMANDS = [evaluate_command, compare_command, runtimes_command]
