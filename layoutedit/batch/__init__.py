"""`layoutedit batch`: many scenes from a JSONL manifest, on one process or many.

`manifest` checks the rows, `runner` runs one process's share, `workspace` keeps the output
folder, its staging sibling and the locks, `dataset` writes the merged files and `coco` the
annotations. The command itself is `layoutedit.cli.batch_cmd`.
"""
