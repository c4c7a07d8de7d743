-- Plain PostgreSQL: nothing to change; 0110 installed the per-statement patient check here.
SELECT 1;
