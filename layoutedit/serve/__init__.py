"""`layoutedit serve`: the interactive editor in the browser, local by default.

Pure parts (no Gradio): `safety` (bind address, paths under the root), `uploads` (byte and
pixel limits), `boxes` (layouts from boxes and paintings), `session` (one tab's state and
files), `jobs` (one model job at a time, cancel your own), `actions` (what the buttons do).
`ui` wires them into a Gradio Blocks app; Gradio is the optional extra `layoutedit[ui]`.
"""
