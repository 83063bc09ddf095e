-- Demo schema and rows for SQLite (what schema apply would create for schema/app.yaml).
-- Types follow crud.md: timestamps as ISO-8601 TEXT, booleans as 0/1, arrays as JSON TEXT.
-- Idempotent: safe to run again.
CREATE TABLE IF NOT EXISTS categories (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS notebooks (
  id TEXT PRIMARY KEY,
  owner_id TEXT NOT NULL,
  title TEXT NOT NULL,
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS notebooks_owner_id_idx ON notebooks (owner_id);

CREATE TABLE IF NOT EXISTS notes (
  id TEXT PRIMARY KEY,
  notebook_id TEXT NOT NULL REFERENCES notebooks (id) ON DELETE CASCADE,
  category_id INTEGER REFERENCES categories (id) ON DELETE SET NULL,
  owner_id TEXT NOT NULL,
  title TEXT NOT NULL,
  body TEXT,
  tags TEXT,
  pinned INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS notes_owner_id_created_at_idx ON notes (owner_id, created_at);
CREATE INDEX IF NOT EXISTS notes_notebook_id_idx ON notes (notebook_id);

INSERT INTO categories (name) VALUES ('Work'), ('Personal'), ('Ideas')
ON CONFLICT (name) DO NOTHING;

INSERT INTO notebooks (id, owner_id, title, created_at) VALUES
  ('01JF0000000000000000000NB1', 'seed-alice', 'Projects', '2024-11-01T09:00:00Z'),
  ('01JF0000000000000000000NB2', 'seed-alice', 'Reading list', '2024-11-02T09:00:00Z'),
  ('01JF0000000000000000000NB3', 'seed-bob', 'Recipes', '2024-11-03T09:00:00Z')
ON CONFLICT (id) DO NOTHING;

INSERT INTO notes (id, notebook_id, category_id, owner_id, title, body, tags, pinned, created_at) VALUES
  ('01JF00000000000000000000N1', '01JF0000000000000000000NB1',
   (SELECT id FROM categories WHERE name = 'Work'), 'seed-alice', 'Ship v1', 'Release on Friday',
   '["release","urgent"]', 1, '2024-11-04T10:00:00Z'),
  ('01JF00000000000000000000N2', '01JF0000000000000000000NB1',
   (SELECT id FROM categories WHERE name = 'Ideas'), 'seed-alice', 'Dark mode', NULL,
   '["ui"]', 0, '2024-11-05T10:00:00Z'),
  ('01JF00000000000000000000N3', '01JF0000000000000000000NB2',
   NULL, 'seed-alice', 'Designing Data-Intensive Applications', 'Chapter 5 next', NULL, 0,
   '2024-11-06T10:00:00Z'),
  ('01JF00000000000000000000N4', '01JF0000000000000000000NB3',
   (SELECT id FROM categories WHERE name = 'Personal'), 'seed-bob', 'Pancakes', '2 eggs, 1 cup flour',
   '["breakfast"]', 0, '2024-11-07T10:00:00Z')
ON CONFLICT (id) DO NOTHING;
