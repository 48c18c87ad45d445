"""`python -m apex` runs the CLI."""

from apex.cli import main

main()
