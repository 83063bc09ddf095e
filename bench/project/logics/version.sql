---
auth: public
description: Which release is serving (S7 rewrites the number on every publish)
---
SELECT 0 AS v
