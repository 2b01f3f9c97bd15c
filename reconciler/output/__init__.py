"""How plans, results and passes look to people and scripts: text, JSON and the live view on a terminal."""
