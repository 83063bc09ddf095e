---
params:
  id: {type: int, required: true}
description: One item by primary key (S1)
---
SELECT id, name FROM items WHERE id = :id
