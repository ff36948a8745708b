"""`layoutedit serve` end to end: the app served in-process on a free localhost port and driven
through its API with `gradio_client` (the embedded model, `fast` preset). The page itself, in
a real browser: `test_serve_browser.py`. Skipped without the `ui` extra (gradio,
gradio_client)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the `ui` extra (gradio) is not installed")
gradio_client = pytest.importorskip("gradio_client", reason="gradio_client is not installed")

from test_serve import png_with_header_size  # noqa: E402

from layoutedit.shapes.world import sample_scene, write_scene_folder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The app over the embedded model with the `fast` preset; scenes `demo` and `other` under
    the root, a scene and a file outside it, and a link from the root to the outside."""
    from layoutedit.editor import Editor
    from layoutedit.serve.actions import ServeContext
    from layoutedit.serve.ui import launch, use_own_file_cache

    base = tmp_path_factory.mktemp("serve")
    # As `layoutedit serve` does: its own Gradio cache, apart from other test workers' apps.
    use_own_file_cache(base / "gradio")
    root = base / "root"
    write_scene_folder(sample_scene(0, 3), root / "demo")
    write_scene_folder(sample_scene(1, 2), root / "other")
    write_scene_folder(sample_scene(2, 2), base / "outside")
    (base / "secret.txt").write_text("not for the app")
    (root / "link-out").symlink_to(base / "outside", target_is_directory=True)
    work = base / "work"
    work.mkdir()
    ctx = ServeContext(
        editor=Editor(preset="fast", cache_dir=base / "cache"),
        root=root,
        work_root=work,
        max_upload_bytes=2 * 2**20,
    )
    app = launch(ctx, host="127.0.0.1", port=free_port(), block=False)
    try:
        yield {"url": app.local_url, "base": base, "ctx": ctx}
    finally:
        app.close()


def client(server: dict[str, Any]) -> Any:
    # A generous timeout: the machine the suite runs on may be busy.
    return gradio_client.Client(server["url"], verbose=False, httpx_kwargs={"timeout": 120})


def status(result: Any) -> dict[str, Any]:
    """The details record of an event's outputs (the first output; the state is hidden)."""
    return result[0]


def sentence(result: Any) -> str:
    """The status sentence the page shows."""
    return str(result[1])


# The outputs of every event after the hidden state (`layoutedit.serve.view.VIEW`).
OBJECTS, BOXES, PREVIEW, COMPARE, CANDIDATES, HISTORY = 2, 4, 5, 7, 8, 9


def test_the_whole_flow_reuses_concept_and_inversion(server: dict[str, Any]) -> None:
    c = client(server)
    page = c.predict("demo", api_name="/open_scene")
    opened = status(page)
    names = [o["name"] for o in opened["objects"]]
    assert len(names) == 3 and opened["scene"] == "demo"
    assert sentence(page).startswith("Opened **demo**: 3 objects")
    assert [box["label"] for box in page[BOXES]["boxes"]] == names  # drawn on the source

    first_learn = c.predict(api_name="/learn")
    learned = status(first_learn)
    assert learned["learned"] and not learned["cached"]
    assert sentence(first_learn).startswith("Learned 3 objects in ")
    again = c.predict(api_name="/learn")
    assert status(again)["cached"] and status(again)["concept"] == learned["concept"]
    assert sentence(again).startswith("The concept came from the cache")

    boxes = status(c.predict(names[0], 0.3, 0.35, 1.0, api_name="/set_box"))["boxes"]
    assert boxes[names[0]] == {"cx": 0.3, "cy": 0.35, "sx": 1.0, "sy": 1.0}

    first = c.predict("0,1", api_name="/edit")
    edited = status(first)
    assert edited["edited"] and len(edited["candidates"]) == 2
    losses = [cand["loss"] for cand in edited["candidates"]]
    assert losses == sorted(losses)  # best first (the fast preset ranks by attention)
    assert all(cand["seconds"] > 0 for cand in edited["candidates"])
    assert edited["concept"] == learned["concept"]
    assert edited["inversion_unet_evaluations"] > 0  # the first edit inverts the source
    assert sentence(first).startswith("Edit 1: 2 seeds in ")
    gallery = first[CANDIDATES]
    assert len(gallery) == 2 and gallery[0]["caption"].startswith("1. seed ")
    assert "attention loss" in gallery[0]["caption"]
    before, after = first[COMPARE]
    assert Path(before).is_file() and Path(after).is_file()
    assert [item["caption"] for item in first[HISTORY]] == [
        "source",
        "edit 1 · seed " + str(edited["candidates"][0]["seed"]),
    ]

    second_seed = edited["candidates"][1]["seed"]
    chosen = c.predict(1, api_name="/choose")
    assert status(chosen)["seed"] == second_seed
    continued = status(c.predict(api_name="/continue_from"))
    assert continued["continued"] and continued["history"] == 1
    assert continued["seed"] == second_seed
    # The base is now the first edit's layout: the moved object's box stays where it went.
    moved = status(c.predict(names[1], 0.6, 0.6, 0.8, api_name="/set_box"))["boxes"]
    assert moved[names[0]]["cx"] == pytest.approx(0.3, abs=0.03)

    second = status(c.predict("0", api_name="/edit"))
    assert second["edited"] and second["edit"] == 2
    assert second["reused_session"] is True
    assert second["inversion_unet_evaluations"] == 0
    assert second["concept"] == learned["concept"]

    files = c.predict(api_name="/downloads")
    assert [Path(f).suffix for f in files] == [".png", ".png", ".png", ".gif"]
    with Image.open(files[3]) as gif:
        assert gif.n_frames == 3  # the source and the two edits


def test_two_clients_keep_their_own_state(server: dict[str, Any]) -> None:
    one, two = client(server), client(server)
    demo = status(one.predict("demo", api_name="/open_scene"))
    other = status(two.predict("other", api_name="/open_scene"))
    assert len(demo["objects"]) == 3 and len(other["objects"]) == 2
    first_name = demo["objects"][0]["name"]
    # Tab two's scene does not have tab one's objects, and the reverse.
    with pytest.raises(gradio_client.exceptions.AppError, match="no object"):
        two.predict(first_name, 0.5, 0.5, 1.0, api_name="/set_box")
    boxes = status(one.predict(first_name, 0.5, 0.5, 1.0, api_name="/set_box"))["boxes"]
    assert len(boxes) == 3
    # A cancel in one tab never stops another tab's job (nothing of its own runs).
    assert status(two.predict(api_name="/cancel"))["cancel_requested"] is False


@pytest.mark.parametrize("name", ["../outside", "link-out", "../secret.txt", "/etc", "demo/../.."])
def test_the_app_reads_nothing_outside_the_root(server: dict[str, Any], name: str) -> None:
    with pytest.raises(gradio_client.exceptions.AppError, match=r"not a path inside|not exist"):
        client(server).predict(name, api_name="/open_scene")


def test_oversized_and_bomb_uploads_are_refused(server: dict[str, Any], tmp_path: Path) -> None:
    c = client(server)
    bomb = png_with_header_size(tmp_path / "bomb.png", 5000, 5000)
    with pytest.raises(gradio_client.exceptions.AppError, match="decompression bomb"):
        c.predict(gradio_client.handle_file(str(bomb)), "a,b", api_name="/upload")
    big = tmp_path / "big.bmp"  # over the server's 2 MiB limit
    Image.new("RGB", (1000, 1000)).save(big)
    with pytest.raises(Exception, match=r"exceeds the maximum file size|413"):
        c.predict(gradio_client.handle_file(str(big)), "a,b", api_name="/upload")


def test_an_uploaded_photo_is_masked_and_opened(server: dict[str, Any], tmp_path: Path) -> None:
    world = sample_scene(7, 2)
    photo = tmp_path / "photo.png"
    Image.fromarray(world.image).save(photo)
    opened = status(
        client(server).predict(
            gradio_client.handle_file(str(photo)), ",".join(world.names), api_name="/upload"
        )
    )
    assert opened["scene"] == "upload 1"
    assert [o["name"] for o in opened["objects"]] == list(world.names)


def test_cancel_stops_the_running_learning(server: dict[str, Any]) -> None:
    import time

    c = client(server)
    status(c.predict("other", api_name="/open_scene"))
    job = c.submit(api_name="/learn")
    gate = server["ctx"].gate
    deadline = time.monotonic() + 60
    while gate.owner is None and not job.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert status(c.predict(api_name="/cancel"))["cancel_requested"] is True
    assert status(job.result(timeout=120)) == {"learned": False, "cancelled": True}
    assert sentence(job.result()) == "Learning cancelled; nothing was kept."
    # Nothing partial was kept: learning again starts from nothing, and is not cached.
    assert status(c.predict(api_name="/learn"))["cached"] is False


def test_rename_and_painting_through_the_api(server: dict[str, Any], tmp_path: Path) -> None:
    import numpy as np

    c = client(server)
    opened = status(c.predict("demo", api_name="/open_scene"))
    first = opened["objects"][0]["name"]
    renamed = status(c.predict(first, "my thing", api_name="/rename"))
    assert renamed["objects"][0]["name"] == "my thing"
    assert "<my_thing>" in renamed["prompt"]
    with pytest.raises(gradio_client.exceptions.AppError, match="background"):
        c.predict("my thing", "background", api_name="/rename")
    second = opened["objects"][1]["name"]
    page = c.predict(second, "  second one ", api_name="/rename")
    assert [o["name"] for o in status(page)["objects"]][1] == "second one"
    assert sentence(page).startswith(f"Renamed {second} to second one")
    assert [row[2] for row in page[OBJECTS]["data"]] == [
        "my thing",
        "second one",
        opened["objects"][2]["name"],
    ]
    with pytest.raises(gradio_client.exceptions.AppError, match="same name"):
        c.predict("my thing", "Second One", api_name="/rename")
    # Paint: every pixel background except two blocks in the first two objects' colours
    # and one in the third's: the painted layout replaces the boxes'.
    colours = [o["colour"] for o in opened["objects"]]
    painted = np.full((128, 128, 3), 254, dtype=np.uint8)
    painted[8:40, 8:40] = colours[0]
    painted[80:120, 80:120] = colours[1]
    painted[8:40, 80:120] = colours[2]
    path = tmp_path / "painted.png"
    Image.fromarray(painted).save(path)
    value = {"background": None, "layers": [], "composite": gradio_client.handle_file(str(path))}
    result = c.predict(value, api_name="/use_painting")
    assert status(result) == {"painted": True}
    with Image.open(result[PREVIEW]) as preview:  # the layout preview shows the painting
        shown = np.asarray(preview.convert("RGB"))
    assert tuple(shown[shown.shape[0] // 8, shown.shape[1] // 8]) == tuple(colours[0])
    painted[80:120, 80:120] = 254  # the second object painted out: refused
    Image.fromarray(painted).save(path)
    with pytest.raises(gradio_client.exceptions.AppError, match="layout"):
        c.predict(value, api_name="/use_painting")


def test_a_closed_tabs_files_are_removed_with_its_state(server: dict[str, Any]) -> None:
    import gradio as gr
    import numpy as np

    from layoutedit.serve.session import SessionState
    from layoutedit.serve.ui import build_app

    ctx = server["ctx"]
    app = build_app(ctx)
    (tab_state,) = [b for b in app.blocks.values() if isinstance(b, gr.State)]
    closed, open_tab = SessionState(), SessionState()
    shown = Path(ctx.files(closed).shown(np.zeros((4, 4, 3), dtype=np.uint8)))
    kept = Path(ctx.files(open_tab).shown(np.zeros((4, 4, 3), dtype=np.uint8)))
    tab_state.delete_callback(closed)  # what Gradio calls when it drops a closed tab's state
    assert not shown.parent.exists()
    assert kept.is_file()
    tab_state.delete_callback(None)  # a tab that never sent an event


def test_files_outside_the_work_folder_are_not_served(server: dict[str, Any]) -> None:
    import httpx

    base = server["base"]
    for path in (base / "root" / "demo" / "image.png", base / "secret.txt", Path("/etc/passwd")):
        response = httpx.get(f"{server['url'].rstrip('/')}/gradio_api/file={path}", timeout=30)
        assert response.status_code in (403, 404), path


def start_serve(scene: Path, cache: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`layoutedit serve SCENE` in a process of its own on a free port; the process and its
    URL once the page answers."""
    import sys
    import time

    import httpx

    port = free_port()
    env = {**os.environ, "LAYOUTEDIT_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    env.pop("GRADIO_TEMP_DIR", None)  # the machine's shared default, as a user has it
    process = subprocess.Popen(
        [sys.executable, "-m", "layoutedit", "serve", str(scene), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        try:
            page = httpx.get(url, timeout=5)
        except httpx.TransportError:
            time.sleep(0.25)
            continue
        assert page.status_code == 200 and "layoutedit" in page.text
        return process, url
    process.kill()
    output = process.stdout.read().decode() if process.stdout else ""
    raise AssertionError(f"serve did not answer: {output}")


def stop_serve(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a user stops it; killed if it has not ended 30 s later."""
    import signal

    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def test_the_serve_command_keeps_its_files_when_another_app_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another Gradio app on the machine shows the same picture (the same scene opened) from
    Gradio's shared cache folder and closes, deleting its copies: the page of `layoutedit
    serve` still loads its own."""
    import httpx

    from layoutedit.editor import Editor
    from layoutedit.serve.actions import ServeContext
    from layoutedit.serve.ui import launch

    write_scene_folder(sample_scene(0, 2), tmp_path / "root" / "demo")
    process, url = start_serve(tmp_path / "root" / "demo", tmp_path / "cache")
    try:
        monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)  # the machine's shared folder
        (tmp_path / "work").mkdir()
        ctx = ServeContext(
            editor=Editor(preset="fast", cache_dir=tmp_path / "cache"),
            root=tmp_path / "root",
            work_root=tmp_path / "work",
        )
        other = launch(ctx, host="127.0.0.1", port=free_port(), block=False)
        try:
            previews = [
                gradio_client.Client(where, verbose=False, download_files=False).predict(
                    "demo", api_name="/open_scene"
                )[PREVIEW]
                for where in (url, other.local_url)
            ]
            assert previews[0]["orig_name"] == previews[1]["orig_name"]  # the same picture
        finally:
            other.close()
        response = httpx.get(previews[0]["url"], timeout=30)
        assert response.status_code == 200, previews[0]["url"]
        assert response.content.startswith(b"\x89PNG")
    finally:
        stop_serve(process)
