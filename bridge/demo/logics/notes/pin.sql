---
params:
  note_id: {type: string, required: true}
  pinned: {type: bool, default: true}
description: Pin or unpin one of the caller's notes (answers with the affected count)
---
UPDATE notes
SET pinned = :pinned
WHERE id = :note_id AND owner_id = :auth.sub
