"""`python -m mtinsar` runs the command line."""

from mtinsar.cli import main

main()
