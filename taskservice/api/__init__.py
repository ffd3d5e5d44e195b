"""The HTTP API: app factory, dependencies, error handlers and one router per resource."""
