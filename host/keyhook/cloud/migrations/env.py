"""Alembic environment: keyhook runs migrations with a connection it hands over
(`keyhook cloud admin --db URL migrate`)."""

from alembic import context

from keyhook.cloud.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
