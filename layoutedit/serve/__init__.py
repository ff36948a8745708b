"""`layoutedit serve`: the interactive editor in the browser, local by default.

Pure parts (no Gradio): `safety` (bind address, paths under the root), `uploads` (byte and
pixel limits), `boxes` (layouts from boxes and paintings), `box_edits` (boxes as a person
drags, resizes and nudges them; undo/redo), `session` (one tab's state and files), `jobs`
(one model job at a time, cancel your own), `actions` and `box_actions` (what the controls
do), `wording` (what the page says: sentences, progress with the time left, the objects
table). With Gradio: `view` (what the page shows for a state), `page` (its CSS and keys)
and `ui` (the wiring); Gradio and its box editor are the optional extra `layoutedit[ui]`.
"""
