# Create Letta's schema from its ORM models (the pip wheel ships no alembic migrations).
import os
import sys
os.environ.setdefault("LETTA_PG_URI", "postgresql://x@localhost/x")  # make the ORM pick PostgreSQL column types
from sqlalchemy import create_engine, text
import letta.orm  # registers all models on Base.metadata
from letta.orm.base import Base

uri = sys.argv[1] if len(sys.argv) > 1 else "postgresql+psycopg2://letta:letta@127.0.0.1:55432/letta"
engine = create_engine(uri)
with engine.begin() as conn:
    conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
Base.metadata.create_all(engine)
print("tables:", len(Base.metadata.tables))
# The migrations give messages.sequence_id a sequence default; the ORM only says FetchedValue().
with engine.begin() as conn:
    conn.execute(text("CREATE SEQUENCE IF NOT EXISTS message_seq"))
    conn.execute(text("ALTER TABLE messages ALTER COLUMN sequence_id SET DEFAULT nextval('message_seq')"))
    conn.execute(text("ALTER SEQUENCE message_seq OWNED BY messages.sequence_id"))
print("sequence default set")
