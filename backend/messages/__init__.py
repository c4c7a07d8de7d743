"""Messages from the care team to the citizen (issue 13)."""
