"""The benchmark: shapes-world cases with exact ground truth, variants, metrics and reports.

`cases` makes the edits (source scene, rough target layout, exact target masks), `paste`
is the model-free reference edit, `segment` finds objects in an output by colour,
`metrics` scores one output, `variants` runs the method's variants, `run` ties them
together, and `report` writes the table, JSON, Markdown and example sheet.
"""
