"""The page's own style and keys: CSS for the layout and the box editor, and a small script
that gives the keyboard to the box controls (the box editor itself draws, drags and resizes).

Keys (not while typing in a field): the arrows nudge the picked object's box, Ctrl+Z undoes,
Ctrl+Shift+Z or Ctrl+Y redoes, and holding Shift frees the proportions while resizing (it
unticks "Keep proportions" until Shift is let go).
"""

ELEM_ID = "layoutedit-editor"

CSS = """
#status { min-height: 3.2em; font-size: 1.05em; }
#boxes button[aria-label="Create box"],
#boxes button[aria-label="Rotate counterclockwise"],
#boxes button[aria-label="Rotate clockwise"] { display: none; }
#objects .swatch { box-shadow: 0 0 0 1px #fff8 inset; }
.nudge button, button.nudge { min-width: 2.6em; }
"""

KEYS_JS = """
() => {
  const click = (id) => { const b = document.getElementById(id); if (b) b.click(); };
  const keep = () => document.querySelector('#keep input[type=checkbox]');
  const typing = (el) => el && (el.isContentEditable ||
    ['INPUT', 'TEXTAREA', 'SELECT'].includes(el.tagName));
  const arrows = {ArrowLeft: 'nudge-left', ArrowRight: 'nudge-right',
                  ArrowUp: 'nudge-up', ArrowDown: 'nudge-down'};
  let freed = false;
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Shift') {
      const box = keep();
      if (!e.repeat && box && box.checked) { box.click(); freed = true; }
      return;
    }
    if (typing(e.target)) return;
    if (arrows[e.key]) { e.preventDefault(); click(arrows[e.key]); return; }
    const key = e.key.toLowerCase();
    if ((e.ctrlKey || e.metaKey) && (key === 'z' || key === 'y')) {
      e.preventDefault();
      click(key === 'y' || e.shiftKey ? 'redo' : 'undo');
    }
  });
  document.addEventListener('keyup', (e) => {
    if (e.key === 'Shift' && freed) {
      freed = false;
      const box = keep();
      if (box && !box.checked) box.click();
    }
  });
}
"""
