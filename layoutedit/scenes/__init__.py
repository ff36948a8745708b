"""Reading scenes and layouts, and layout maths (pure numpy and PIL)."""
