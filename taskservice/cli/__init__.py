"""The `taskservice` command: server commands and the operator client."""
