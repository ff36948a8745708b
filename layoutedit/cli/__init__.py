"""The Typer command-line interface; thin: commands parse, call the library, print."""
