"""What runs write for people: self-contained HTML pages and image grids."""
