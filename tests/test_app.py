"""The viewer's callbacks, scripted through gradio_client against a server the tests start."""

import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from acol.viewer.page import Page
from acol.viewer.view import Session
from conftest import REPO, TEACHING_DESCRIPTION, bundled_examples, png_header_only

ACOL, CAM, TEACHING = "tiny_acol", "tiny_cam", "tiny_synthetic_acol"
EXAMPLE = bundled_examples()[0]


@pytest.fixture(scope="module")
def client(viewer_url):
    return Client(viewer_url, verbose=False)


def explain(client, path, model=ACOL, erase_threshold=0.6, box_threshold=0.2):
    """The /explain event: (4 panel files, class dropdown, baseline dropdown, status)."""
    *panels, classes, baselines, _, status, _, _ = client.predict(handle_file(str(path)), model, erase_threshold,
                                                               box_threshold, api_name="/explain")
    return panels, classes, baselines, status


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def noise_png(path, width=96, height=64, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def test_every_event_is_scriptable(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name in ("/explain", "/choose_model", "/set_erase_threshold", "/set_class", "/set_box_threshold",
                 "/sweep", "/compare", "/export", "/click_cell", "/toggle_cell", "/reset_mask"):
        assert name in endpoints


def test_explain_then_move_the_slider_change_the_class_and_export(client, tmp_path):
    panels, classes, baselines, status = explain(client, noise_png(tmp_path / "bird.png"))
    assert all(pixels(panel).shape[0] == 256 for panel in panels)  # 96x64 shown at 384x256
    assert len(classes["choices"]) == 3 and classes["value"] == classes["choices"][0][1]
    assert "%" in classes["choices"][0][0]
    assert baselines["value"] == CAM
    assert "δ = 0.60" in status

    erased, branch_b, fused, moved_status, _, _ = client.predict(0.2, 0.2, CAM, api_name="/set_erase_threshold")
    assert "δ = 0.20" in moved_status
    assert not np.array_equal(pixels(erased), pixels(panels[1])), "a lower δ erases more cells"

    other = classes["choices"][1][1]
    *class_panels, class_status, _, _ = client.predict(other, 0.2, CAM, api_name="/set_class")
    assert classes["choices"][1][0].split(" (")[0] in class_status
    assert "δ = 0.20" in class_status, "changing the class keeps the slider's δ"

    fused_loose, box_status = client.predict(0.9, api_name="/set_box_threshold")
    assert "box above 0.90" in box_status

    assert pixels(client.predict(api_name="/sweep")).shape[1] > 1000
    assert pixels(client.predict(CAM, api_name="/compare")).ndim == 3
    with Image.open(client.predict(0.2, api_name="/export")) as figure:
        assert figure.format == "PNG" and figure.width > 3 * figure.height


def test_the_comparison_follows_the_controls_only_while_its_tab_is_open(viewer_url, tmp_path):
    tab = Client(viewer_url, verbose=False)
    closed = tab.predict(handle_file(str(noise_png(tmp_path / "bird.png"))), ACOL, 0.6, 0.2, api_name="/explain")[-2]
    closed_move = tab.predict(0.3, 0.2, CAM, api_name="/set_erase_threshold")[-2]
    assert closed == closed_move == {"__type__": "update"}, "a closed tab gets no picture, only 'no change'"

    opened = pixels(tab.predict(CAM, api_name="/compare"))  # what selecting the tab runs
    moved = tab.predict(0.8, 0.2, CAM, api_name="/set_erase_threshold")[-2]
    assert not np.array_equal(pixels(moved), opened), "δ changes ACoL's fused map beside CAM's"
    assert len(tab.predict(0.5, api_name="/set_box_threshold")) == 2, "each model keeps its own box threshold"


# ---------------------------------------------------------------------------------------------
# The first view, each model's examples and description, B's verdict, erasing by hand


def by_elem_id(demo, elem_id):
    return next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == elem_id)


def test_the_page_opens_on_the_teaching_model_and_its_first_example_drawn(tiny_checkpoints, tiny_cub_root):
    import app
    demo = app.build_demo(tiny_checkpoints, [REPO / "assets" / "examples", tiny_cub_root])
    model = next(block for block in demo.blocks.values() if getattr(block, "label", None) == "Model")
    assert model.value == TEACHING and [value for _, value in model.choices][:2] == [TEACHING, ACOL]
    payload = json.loads(by_elem_id(demo, "viewer").value)  # what the browser draws the four panels from
    assert payload["model"] == TEACHING and payload["grid"] == [8, 8] and payload["view"]["delta"] == 0.5
    shown = payload["steps"][payload["deltas"].index(0.5)]
    assert "δ = 0.50" in shown["erasing"] and "cells erased (δ = 0.50)" in shown["verdict"]
    assert payload["states"][shown["state"]]["ious"] is not None, "an example's true box is known"
    assert by_elem_id(demo, "erase-threshold").value == 0.5, "the teaching model's own δ"
    assert TEACHING_DESCRIPTION in by_elem_id(demo, "model-about").value
    assert by_elem_id(demo, "examples-0").visible and not by_elem_id(demo, "examples-1").visible
    assert not by_elem_id(demo, "no-examples").visible
    choose = next(fn for fn in demo.fns.values() if fn.api_name == "choose_model")
    assert not any(isinstance(block, app.gr.Dataset) for block in choose.outputs), \
        "an updated Dataset is rebuilt from its folder's paths, which the server may not read then"
    session = next(block for block in demo.blocks.values() if isinstance(block, app.gr.State))
    first = session.value()  # a function: Gradio's config of a State holding the Session deep-copied its tensors
    assert isinstance(first, Session) and first.explanation.model_name == TEACHING  # the slider and clicks work on it
    assert copy.deepcopy(first) is first, "new tabs share the first session (events never change one in place)"


def test_a_new_tab_shares_the_first_session_and_copies_nothing_of_the_page(viewer_demo):
    """Gradio built the config of all of the page's components for each new session, and of each
    one an event changed (kept for deep links, which the page does not offer), and deep-copied the
    first session's tensors into it: most of the server's time when a class of 30 clicked their
    first example at once."""
    import app
    from gradio.state_holder import SessionState
    new_tab = SessionState(viewer_demo)
    assert new_tab.config_values == {}, "no copy of the page's config"
    viewer = next(key for key, block in viewer_demo.blocks.items() if getattr(block, "elem_id", None) == "viewer")
    new_tab._update_value_in_config(viewer, "{}")  # as Gradio does for each output of an event
    assert new_tab.config_values == {viewer: {}}, "nor of a component an event changed"
    state = next(block for block in viewer_demo.blocks.values() if isinstance(block, app.gr.State))
    assert new_tab[state._id] is state.value() is viewer_demo.acol_page.first.session, "the first view's, shared"


def test_an_image_api_schema_is_made_once_for_every_image_gradio_builds(viewer_demo, monkeypatch):
    """Gradio builds a new component for each update of an output, even a skip, and each made its
    API schema again with pydantic: ~4 ms for each tab picture of every picture event."""
    import app
    data_model = app.gr.Image(render=False).data_model
    made = []
    make = data_model.model_json_schema
    monkeypatch.setattr(data_model, "model_json_schema", lambda *args, **kwargs: made.append(1) or make(*args, **kwargs))
    one, other = app.gr.Image(render=False), app.gr.Image(render=False)
    assert one.api_info() == other.api_info() and not made, "made once, when the page was built"
    one.api_info()["title"] = "changed"
    assert other.api_info()["title"] != "changed", "each component its own copy"


def test_the_first_view_answers_the_controls_without_an_upload(viewer_url):
    fresh = Client(viewer_url, verbose=False)  # a new session: its state is the first view
    erased, branch_b, fused, status, _, verdict = fresh.predict(0.3, 0.2, None, api_name="/set_erase_threshold")
    assert "δ = 0.30" in status and "δ = 0.30" in verdict and erased is not None


def choose_model(client, model, image=EXAMPLE):
    """The /choose_model event: a dict of what it changed (the client is not sent the Columns
    that show or hide each example set: the browser test sees those)."""
    names = ["image", "about", "note", "box", "branch-a", "erased", "branch-b", "fused",
             "classes", "baselines", "delta", "status", "compared", "verdict"]
    return dict(zip(names, client.predict(handle_file(str(image)) if image else None, model, 0.6, 0.2,
                                          api_name="/choose_model"), strict=True))


def test_each_model_shows_its_own_examples_and_an_example_never_meets_another_model(viewer_url, tiny_cub_root):
    tab = Client(viewer_url, verbose=False)
    cub = choose_model(tab, ACOL)  # the synthetic example is not for this model: its own first example replaces it
    assert cub["note"]["visible"] is False
    first_bird = tiny_cub_root / "images" / "001.red_crest" / "bird.jpg"  # image 1, of the root's test split
    assert Path(cub["image"]).read_bytes() == first_bird.read_bytes()
    assert cub["status"] == {"__type__": "update"}, "explaining follows from the image's change, not with the wrong model"
    assert "3 bird species" in cub["about"] and "35.0%" in cub["about"], "no description: the validation figures"
    assert cub["box"] == 0.45, "the model's own validated box threshold"
    assert cub["delta"] == 0.6, "and its own δ (a plain value: the slider is also the event's input)"
    teaching = choose_model(tab, TEACHING, first_bird)  # a bird example: not for the teaching model
    assert Path(teaching["image"]).read_bytes() == EXAMPLE.read_bytes()
    assert TEACHING_DESCRIPTION in teaching["about"] and teaching["delta"] == 0.5
    empty = choose_model(tab, ACOL, image=None)
    assert Path(empty["image"]).read_bytes() == first_bird.read_bytes(), "no image: the model's first example"
    own = choose_model(tab, CAM, first_bird)
    assert Path(own["image"]).read_bytes() == first_bird.read_bytes() and "δ" not in own["status"], \
        "its own example: explained as is"


def test_a_model_without_examples_asks_for_a_photo_and_keeps_an_upload(tiny_checkpoints, tmp_path):
    from acol.viewer.shelf import CheckpointShelf, ExampleImages
    page = Page(CheckpointShelf(tiny_checkpoints), ExampleImages([REPO / "assets" / "examples"]))
    view = page.choose_model(Session(), str(EXAMPLE), ACOL)
    assert view.image is None and view.examples_shown == [False] and view.no_examples.visible is True
    assert "upload a photo" in view.no_examples.value and "3 bird species" in view.no_examples.value
    assert view.payload["message"] == view.no_examples.value and view.session.explanation is None
    upload = noise_png(tmp_path / "mine.png")
    view = page.choose_model(Session(), str(upload), ACOL)
    assert view.image == str(upload) and view.session.explanation is not None and view.delta.value == 0.6
    payload = view.payload
    shown = payload["steps"][payload["deltas"].index(0.6)]
    assert "δ = 0.60" in shown["erasing"] and "cells erased" in shown["verdict"]


def test_b_verdict_follows_the_slider_and_the_class(client, tmp_path):
    *_, verdict = client.predict(handle_file(str(noise_png(tmp_path / "v.png"))), ACOL, 0.6, 0.2, api_name="/explain")
    assert "δ = 0.60" in verdict and "%" in verdict
    *_, moved = client.predict(0.2, 0.2, CAM, api_name="/set_erase_threshold")
    assert "δ = 0.20" in moved and moved != verdict
    *_, other = client.predict(2, 0.2, CAM, api_name="/set_class")
    assert "δ = 0.20" in other and ("still says **green crest" in other or "(not green crest)" in other)


def erased_cells(status: str) -> int:
    return int(status.split("erased ")[1].split(" of")[0])


def test_toggling_cells_by_hand_and_back_to_the_delta_mask(client, tmp_path):
    panels, _, _, status = explain(client, noise_png(tmp_path / "hand.png"))
    before = erased_cells(status)
    erased, branch_b, fused, toggled, _, verdict = client.predict(0, 0, 0.2, CAM, api_name="/toggle_cell")
    assert "by hand" in toggled and "by hand" in verdict and abs(erased_cells(toggled) - before) == 1
    assert not np.array_equal(pixels(erased), pixels(panels[1])), "the erased panel shows the new mask"
    *_, again, _, _ = client.predict(0, 0, 0.2, CAM, api_name="/toggle_cell")
    assert erased_cells(again) == before, "a second toggle restores the cell"
    client.predict(3, 4, 0.2, CAM, api_name="/toggle_cell")
    *_, reset, _, reset_verdict = client.predict(0.2, CAM, api_name="/reset_mask")
    assert "δ = 0.60" in reset and erased_cells(reset) == before and "by hand" not in reset_verdict
    client.predict(3, 4, 0.2, CAM, api_name="/toggle_cell")
    *_, slid, _, _ = client.predict(0.6, 0.2, CAM, api_name="/set_erase_threshold")
    assert "δ = 0.60" in slid and erased_cells(slid) == before, "a slider move goes back to the δ mask"
    *_, outside, _, _ = client.predict(8, 0, 0.2, CAM, api_name="/toggle_cell")
    assert outside == {"__type__": "update"}, "a cell off the grid changes nothing (and says so)"


def test_a_hand_made_mask_stays_in_its_own_session(viewer_url, tmp_path):
    image = noise_png(tmp_path / "shared.png", seed=5)
    first, second = Client(viewer_url, verbose=False), Client(viewer_url, verbose=False)
    before = erased_cells(explain(first, image)[3])
    assert erased_cells(explain(second, image)[3]) == before
    *_, mine, _, _ = first.predict(2, 2, 0.2, CAM, api_name="/toggle_cell")
    *_, theirs, _, _ = second.predict(5, 5, 0.2, CAM, api_name="/toggle_cell")
    assert abs(erased_cells(mine) - before) == abs(erased_cells(theirs) - before) == 1, "each toggled its own mask"
    *_, mine_again, _, _ = first.predict(2, 2, 0.2, CAM, api_name="/toggle_cell")
    assert erased_cells(mine_again) == before, "the other session's toggle never reached this mask"
    *_, theirs_reset, _, _ = second.predict(0.2, CAM, api_name="/reset_mask")
    *_, mine_kept, _, _ = first.predict(2, 2, 0.2, CAM, api_name="/toggle_cell")
    assert erased_cells(theirs_reset) == before and "by hand" in mine_kept, "nor did its reset"
    third = Client(viewer_url, verbose=False)
    *_, _, _, fresh_verdict = third.predict(0.2, None, api_name="/reset_mask")
    assert "by hand" not in fresh_verdict, "a new session starts from the first view, not another's mask"


def test_the_comparison_boxes_each_model_at_its_own_validated_threshold(client, tmp_path, monkeypatch):
    import acol.viewer.page_tabs
    thresholds = []
    drawn = acol.viewer.page_tabs.compare_picture
    monkeypatch.setattr(acol.viewer.page_tabs, "compare_picture", lambda *args: thresholds.append(args[2:]) or drawn(*args))
    explain(client, noise_png(tmp_path / "cmp.png"), box_threshold=0.8)
    client.predict(CAM, api_name="/compare")
    assert thresholds and set(thresholds) == {(0.35, 0.45)}, "CAM at its 'A' threshold, ACoL at its 'fused' one, not the slider's 0.8"


def test_an_example_shows_its_true_box_iou_and_class(client):
    example = bundled_examples()[0]
    _, _, _, status = explain(client, example)
    assert "IoU with true box" in status
    assert f"true class: {(REPO / 'assets' / 'examples' / 'labels.csv').read_text().splitlines()[1].split(',')[1]}" in status


def test_a_cam_model_shows_notes_where_it_has_no_erasing(client, tmp_path):
    panels, classes, baselines, status = explain(client, noise_png(tmp_path / "cam.png"), model=CAM)
    assert "δ" not in status and all(pixels(panel).ndim == 3 for panel in panels)
    assert pixels(client.predict(api_name="/sweep")).ndim == 3  # a note, not an error
    assert pixels(client.predict(None, api_name="/compare")).ndim == 3


def write_bad(path, kind):
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 72, 3), dtype=np.uint8))
    if kind == "not-an-image":
        path.write_bytes(b"%PDF-1.4 definitely not a picture\n" * 20)
    elif kind == "truncated":
        buffer = io.BytesIO()
        rgb.save(buffer, "PNG")
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    elif kind == "bomb":
        path.write_bytes(png_header_only(40_000, 40_000))
    elif kind == "rgba":
        rgb.convert("RGBA").save(path)
    elif kind == "palette":
        rgb.convert("P").save(path)
    elif kind == "grayscale":
        rgb.convert("L").save(path)
    elif kind == "16-bit":
        Image.fromarray((np.arange(48 * 72).reshape(48, 72) * 18).astype(np.uint16)).save(path)
    elif kind == "cmyk":
        rgb.convert("CMYK").save(path, "JPEG")
    elif kind == "1x1":
        Image.new("RGB", (1, 1), (200, 30, 30)).save(path)
    return path


@pytest.mark.parametrize("kind, readable", [
    ("not-an-image", False), ("truncated", False), ("bomb", False), ("rgba", True), ("palette", True),
    ("grayscale", True), ("16-bit", True), ("cmyk", True), ("1x1", True)])
def test_bad_input_gets_a_message_or_a_result_and_the_server_keeps_serving(client, tmp_path, kind, readable):
    suffix = ".jpg" if kind == "cmyk" else ".png"
    panels, _, _, status = explain(client, write_bad(tmp_path / f"{kind}{suffix}", kind))
    if readable:
        assert all(panel is not None for panel in panels) and "Cannot" not in status
    else:
        assert all(panel is None for panel in panels)
        assert status.startswith("**Cannot explain this:**") and f"{kind}{suffix}" in status
        assert "/tmp" not in status, "the message names the file, not the server's temp path"
    good, _, _, _ = explain(client, noise_png(tmp_path / "after.png"))
    assert all(panel is not None for panel in good)


def test_an_exif_rotated_photo_is_shown_upright(client, tmp_path):
    wide = Image.new("RGB", (90, 30), (20, 20, 200))
    wide.paste((230, 230, 30), (0, 0, 30, 30))  # a yellow square at the left end
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    wide.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    panels, _, _, _ = explain(client, tmp_path / "rotated.jpg")
    shown = pixels(panels[0])
    assert shown.shape[0] == 384 and shown.shape[1] < 384, "upright: taller than wide"


def test_without_checkpoints_the_page_says_what_to_do(tmp_path):
    import app
    demo = app.build_demo(tmp_path / "empty")
    texts = [block.value for block in demo.blocks.values() if isinstance(getattr(block, "value", None), str)]
    assert any("No checkpoint found" in text for text in texts)


def test_python_app_binds_localhost_7860_unless_the_environment_says_otherwise(monkeypatch, tmp_path):
    import app
    launched = []
    monkeypatch.setattr(app, "launch", lambda demo, **options: launched.append(options))
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    app.main(["--checkpoints", str(tmp_path)])
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    app.main(["--checkpoints", str(tmp_path), "--share"])
    assert launched == [dict(server_name="127.0.0.1", server_port=7860, share=False),
                        dict(server_name="0.0.0.0", server_port=7999, share=True)]


# ---------------------------------------------------------------------------------------------
# Untrusted requests and resource bounds


def raw_call(viewer_url, api_name, data):
    """An event request as any HTTP client can send it: no gradio_client uploading files for us."""
    import httpx
    url = f"{viewer_url}gradio_api/call/{api_name}"
    event = httpx.post(url, json={"data": data}).json()["event_id"]
    return httpx.get(f"{url}/{event}", timeout=60).text


def test_a_page_request_cannot_make_the_server_read_one_of_its_own_files(viewer_url, tmp_path):
    import httpx
    secret = REPO / "assets" / "examples" / sorted(p.name for p in (REPO / "assets" / "examples").glob("*.png"))[0]
    for path in ("/etc/hostname", str(secret)):
        reply = raw_call(viewer_url, "explain", [{"path": path, "meta": {"_type": "gradio.FileData"}},
                                                  "tiny_acol", 0.6, 0.2])
        assert reply.startswith("event: error"), reply
    # The same request with a file the user uploaded works, so the refusal above is about the path.
    with open(noise_png(tmp_path / "mine.png"), "rb") as file:
        uploaded = httpx.post(f"{viewer_url}gradio_api/upload", files={"files": file}).json()[0]
    reply = raw_call(viewer_url, "explain", [{"path": uploaded, "meta": {"_type": "gradio.FileData"}},
                                              "tiny_acol", 0.6, 0.2])
    assert reply.startswith("event: complete")
    assert "δ = 0.60" in json.loads(reply.split("data: ", 1)[1])[-3]  # the status line


def test_only_the_checkpoints_in_the_viewers_folder_can_be_chosen(client, tiny_checkpoints, tmp_path):
    from gradio_client.exceptions import AppError

    from acol.core.checkpoint import CheckpointError
    from acol.viewer.shelf import CheckpointShelf
    for name in ("../../etc/passwd", "/etc/passwd", str(tiny_checkpoints / "tiny_acol")):
        with pytest.raises(AppError, match="not in the list of choices"):
            explain(client, noise_png(tmp_path / "x.png"), model=name)
        with pytest.raises(CheckpointError, match="no checkpoint named"):
            CheckpointShelf(tiny_checkpoints)[name]


def test_a_request_past_its_time_limit_is_abandoned_with_a_message(client, viewer_demo, tmp_path, monkeypatch):
    import time

    import acol.viewer.page_answers
    slow_loader = acol.viewer.page_answers.load_rgb_image
    monkeypatch.setattr(viewer_demo.acol_page, "request_timeout_s", 0.2)
    monkeypatch.setattr(acol.viewer.page_answers, "load_rgb_image", lambda path: time.sleep(1.0) or slow_loader(path))
    started = time.perf_counter()
    panels, _, _, status = explain(client, noise_png(tmp_path / "slow.png", seed=31))  # never seen: not cached
    assert "gave up after 0.2 s" in status and panels == [None] * 4
    assert time.perf_counter() - started < 1.0, "the user hears back at the limit, not when the work ends"
    monkeypatch.undo()
    panels, _, _, status = explain(client, noise_png(tmp_path / "fast.png", seed=32))
    assert all(panel is not None for panel in panels)


def memory_status(field: str) -> int:
    """A memory figure of this process from /proc/self/status (Linux), in bytes."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def peak_memory_since_reset() -> int:
    """Peak resident memory (bytes) since the last reset (Linux: /proc/self/clear_refs)."""
    return memory_status("VmHWM")


def reset_peak_memory() -> int:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return peak_memory_since_reset()


@pytest.fixture(scope="module")
def huge_uploads(tmp_path_factory):
    """10,000 x 10,000 pixel uploads: a JPEG (decoded at reduced scale) and a PNG (refused)."""
    folder = tmp_path_factory.mktemp("huge")
    image = Image.linear_gradient("L").resize((10_000, 10_000)).convert("RGB")
    image.save(folder / "huge.jpg", quality=70)
    image.save(folder / "huge.png")
    del image
    return folder / "huge.jpg", folder / "huge.png"


def test_a_10000_pixel_square_upload_neither_exhausts_memory_nor_blocks_other_users(viewer_url, huge_uploads, tmp_path):
    import threading
    import time
    other = Client(viewer_url, verbose=False)
    explain(other, noise_png(tmp_path / "other.png"))
    baseline = reset_peak_memory()
    results = {}
    for path in huge_uploads:
        uploader = threading.Thread(target=lambda: results.setdefault(path.suffix, explain(Client(
            viewer_url, verbose=False), path)))
        uploader.start()
        slider_seconds = []
        while uploader.is_alive() or not slider_seconds:
            started = time.perf_counter()
            other.predict(0.3 + 0.1 * (len(slider_seconds) % 5), 0.2, CAM, api_name="/set_erase_threshold")
            slider_seconds.append(time.perf_counter() - started)
        uploader.join()
        assert max(slider_seconds) < 2.0, f"the other user waited {max(slider_seconds):.1f} s"
    jpeg_panels, _, _, jpeg_status = results[".jpg"]
    assert all(panel is not None for panel in jpeg_panels) and "Cannot" not in jpeg_status
    _, _, _, png_status = results[".png"]
    assert "too large" in png_status and "10000 x 10000" in png_status and "25-megapixel" in png_status
    grown = peak_memory_since_reset() - baseline
    assert grown < 200e6, f"peak memory grew {grown / 1e6:.0f} MB; one full decode would be 300 MB"


def test_memory_the_server_freed_goes_back_to_the_system():
    from acol.viewer.serving import trim_freed_memory
    pictures = [np.ones(60_000, np.uint8) for _ in range(2000)]  # 120 MB of picture-sized blocks
    last = pictures[-1]  # still in use: glibc cannot simply shrink its heap from the top
    allocated = memory_status("RssAnon")
    del pictures
    assert memory_status("RssAnon") > allocated - 20e6, "glibc kept the freed blocks (the premise)"
    assert trim_freed_memory()
    assert memory_status("RssAnon") < allocated - 80e6
    del last


def heaps_after_threads(share_few: bool) -> int:
    """How many glibc heaps a fresh Python process holds after 8 threads allocated at once (read
    from glibc's own ``malloc_info`` report)."""
    script = f"""
import ctypes, sys, tempfile, threading
import numpy as np
sys.path[:0] = [{str(REPO)!r}]
from acol.viewer.serving import share_few_heaps
if {share_few}:
    assert share_few_heaps()
together = threading.Barrier(8)
def work():
    together.wait()
    blocks = [np.ones(50 << 10, np.uint8) for _ in range(40)]
    together.wait()  # all eight hold theirs at once
threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads: thread.start()
for thread in threads: thread.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile(suffix=".xml") as report:
    stream = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    print(open(report.name).read().count("<heap nr="))
"""
    import subprocess
    import sys
    return int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)


def test_the_servers_threads_share_two_heaps_which_the_trimmer_keeps_small():
    from acol.viewer.serving import REQUEST_WORKERS
    assert heaps_after_threads(share_few=False) > 4, "glibc gives busy threads heaps of their own (the premise)"
    assert heaps_after_threads(share_few=True) <= REQUEST_WORKERS == 2


def test_a_launched_viewer_keeps_its_memory_flat_in_the_background(viewer_url):
    import threading
    trimmers = [thread for thread in threading.enumerate() if thread.name == "acol-trim-freed-memory"]
    assert len(trimmers) == 1 and trimmers[0].daemon and trimmers[0].is_alive()


def test_a_served_page_gives_each_upload_explained_at_once_its_share_of_the_cores(monkeypatch):
    import torch

    import app
    launched = []
    monkeypatch.setattr(app, "build_demo", lambda *args, **kwargs: "the demo")
    monkeypatch.setattr(app, "launch", lambda demo, **options: launched.append(demo))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # a 2-core host's default
        app.main(["--checkpoints", "nowhere"])  # what `python app.py` runs
        assert launched == ["the demo"] and torch.get_num_threads() == 2 // app.UPLOAD_CONCURRENCY == 1
    finally:
        torch.set_num_threads(threads)


def test_the_queue_is_bounded_and_only_uploads_and_slider_moves_run_two_at_a_time(tiny_checkpoints):
    import app
    demo = app.build_demo(tiny_checkpoints)
    assert demo._queue.max_size == app.QUEUE_LIMIT
    assert demo._queue.default_concurrency_limit == 1
    # Gradio's per-event records (for its monitoring page) are bounded and summarized rarely.
    assert demo._queue.ANALYTICS_MAX_EVENTS == 1000 and demo._queue.ANAYLTICS_CACHE_FREQUENCY == 1000
    limits = {fn.api_name: fn.concurrency_limit for fn in demo.fns.values()}
    assert limits.pop("set_erase_threshold") == limits.pop("set_box_threshold") == app.SLIDER_CONCURRENCY == 2
    assert limits.pop("page_explain") == app.UPLOAD_CONCURRENCY == 2, "an upload's payload beside another's backbone"
    assert set(limits.values()) == {"default"}  # i.e. the queue's 1: uploads run the backbone one at a time
    functions = {fn.fn for fn in demo.fns.values()}
    assert len({fn.concurrency_id for fn in demo.fns.values()}) == len(functions)  # one group per callback


def test_each_session_sees_only_its_own_images_results(viewer_url, tmp_path):
    """Two tabs with different images, their events interleaved, get what each got alone."""
    images = [noise_png(tmp_path / f"tab{seed}.png", seed=seed) for seed in (11, 12)]

    def session(image, *interleaved_with):
        tab = Client(viewer_url, verbose=False)
        replies = [explain(tab, image)[3]]
        for other in interleaved_with:
            explain(other, images[1])  # another tab uploads its image in between
        for delta in (0.3, 0.8):
            replies.append(tab.predict(delta, 0.2, CAM, api_name="/set_erase_threshold")[3])
        return replies

    alone = session(images[0])
    interleaved = session(images[0], Client(viewer_url, verbose=False))
    assert interleaved == alone
    assert session(images[1]) != alone  # the statuses do tell the two images apart


def test_the_page_opens_on_the_first_example_whose_story_holds(tiny_checkpoints):
    """Chosen by what the example shows (its parts: A on the head, B on the body and right, the
    fused box on the bird), never by how sure the model is; the first example when none tells it."""
    from acol.viewer.shelf import CheckpointShelf, ExampleImages, content_digest
    page = Page(CheckpointShelf(tiny_checkpoints), ExampleImages([REPO / "assets" / "examples"]))
    paths = page.examples.groups[0].paths
    stories = [page.answer_file(path, content_digest(path), TEACHING).payload["story"] for path in paths]
    assert all(story["parts_known"] for story in stories), "every bundled synthetic example knows its parts"
    holding = [path for path, story in zip(paths, stories) if story["holds"]]
    assert page.first.image == (holding[0] if holding else paths[0])


def test_spaces_runs_the_gradio_version_the_tests_ran():
    """Hugging Face Spaces installs the README's sdk_version, whatever requirements.txt pins."""
    import gradio
    front_matter = (REPO / "README.md").read_text().split("---")[1]
    pinned = dict(line.split(": ", 1) for line in front_matter.strip().splitlines())
    assert pinned["sdk_version"] == gradio.__version__
    assert f"gradio=={gradio.__version__}" in (REPO / "requirements.txt").read_text()


def test_a_sessions_page_state_stays_the_same_size_however_many_events_it_sends(viewer_demo, tmp_path):
    """Gradio keeps a new copy of a component in the session for every update of it, and one that
    is also the event's input stayed there each time: each upload grew the server by ~24 KB. The
    page's uploads and example clicks now send such a component a plain value."""
    tab = Client(viewer_demo.url, verbose=False)
    blocks = []
    for seed in range(6):
        tab.predict(handle_file(str(noise_png(tmp_path / f"u{seed}.png", seed=40 + seed))), TEACHING, 0.5, 0.2,
                    api_name="/page_explain")
        tab.predict(1, TEACHING, 0.5, 0.2, api_name="/page_example_0")
        blocks.append(len(viewer_demo.state_holder.session_data[tab.session_hash].blocks_config.blocks))
    assert blocks[-1] == blocks[1], blocks
