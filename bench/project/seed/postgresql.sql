-- Tables of schema/app.yaml (as schema apply would create them) and the rows the scenarios read.
CREATE TABLE items (
  id bigint PRIMARY KEY,
  name text NOT NULL
);
INSERT INTO items (id, name) SELECT i, 'item ' || i FROM generate_series(1, 10000) AS i;

CREATE TABLE notes (
  id text PRIMARY KEY,
  owner_id text NOT NULL,
  title text NOT NULL,
  pinned boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notes_owner_id_created_at_idx ON notes (owner_id, created_at);
-- Other people's notes: the row filter has to leave them out.
INSERT INTO notes (id, owner_id, title, pinned, created_at)
SELECT lpad(i::text, 26, '0'), 'owner-' || (i % 50), 'note ' || i, i % 5 = 0,
       timestamptz '2024-01-01' + i * interval '1 minute'
FROM generate_series(1, 10000) AS i;

CREATE TABLE entries (
  id text PRIMARY KEY,
  owner_id text NOT NULL,
  title text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
ANALYZE;
