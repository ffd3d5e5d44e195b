"""The database seam: named queries, one executor per driver, migrations, the embedded server."""
