"""taskservice: background tasks over REST, with PostgreSQL (via Procrastinate) as the queue."""
