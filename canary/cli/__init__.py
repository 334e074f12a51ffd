"""The command line, on Flask's: `flask --app app <group> <command>`."""
