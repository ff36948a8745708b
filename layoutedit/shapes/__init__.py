"""The shapes world and the recipe of the embedded `shapes-tiny` model (see shapes-world.md)."""
