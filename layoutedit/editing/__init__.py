"""Stage 2: editing a layout (inversion, attention-guided sampling, blending, the paste
start, compositing, ranking) and what an edit writes; edit scripts and animations."""
