---
auth: public
description: Totals shown on the landing page
---
SELECT
  (SELECT COUNT(*) FROM notebooks) AS notebooks,
  (SELECT COUNT(*) FROM notes) AS notes,
  (SELECT COUNT(*) FROM categories) AS categories
