"""Alert rules as data (YAML in this folder) and their pure evaluator."""
