"""The worker: the Procrastinate App, its middleware, retry policy and the service's own jobs."""
