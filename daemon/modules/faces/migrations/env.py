"""Alembic environment for the face store: migrations run on the connection the store hands over
(``config.attributes["connection"]``), never from a URL in a file."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True)  # SQLite alters tables by copying them
with context.begin_transaction():
    context.run_migrations()
