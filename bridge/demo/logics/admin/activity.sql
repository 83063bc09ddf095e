---
roles: [admin]
params:
  limit: {type: int, default: 10}
description: Most active owners (admins only)
---
-- ':limit' inside this comment and in 'strings' is not a binding
SELECT owner_id, COUNT(*) AS notes, MAX(created_at) AS last_note_at
FROM notes
GROUP BY owner_id
ORDER BY notes DESC, owner_id
LIMIT :limit
