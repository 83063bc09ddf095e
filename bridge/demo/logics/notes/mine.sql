---
params:
  notebook_id: {type: string}
  limit: {type: int, default: 20}
description: The caller's notes, newest first, optionally from one notebook
---
SELECT id, notebook_id, title, pinned, created_at
FROM notes
WHERE owner_id = :auth.sub
  -- the CAST tells PostgreSQL the type of the parameter when it is NULL
  AND (CAST(:notebook_id AS TEXT) IS NULL OR notebook_id = :notebook_id)
ORDER BY created_at DESC, id
LIMIT :limit;
