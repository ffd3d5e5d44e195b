"""Request and response shapes shared by the API, the services and the CLI."""
