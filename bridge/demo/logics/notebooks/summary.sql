---
params:
  owner_id: {type: string, required: true}
# a request gate: your own notebooks, or anyone's if you are an admin
condition: request.params.owner_id == request.auth.sub || "admin" in request.auth.roles
description: Notebooks of one owner with their note counts
---
SELECT nb.id, nb.title, COUNT(n.id) AS notes
FROM notebooks nb
LEFT JOIN notes n ON n.notebook_id = nb.id
WHERE nb.owner_id = :owner_id
GROUP BY nb.id, nb.title
ORDER BY nb.title, nb.id
