"""The command line: parsing, commands, output, the live view, completion, logging set-up."""
