"""The service layer: plain async functions over the store, shared by the API and the CLI."""
