"""Arbitrary-style models (train.py --arbitrary, render_* --style-image) and train.py --add-style, at tiny sizes
with the offline loss network."""

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import render_image
import train
from conftest import (
    assert_clean_failure,
    files_under,
    load_state,
    run_main_in_process,
    save_random_conditional_model,
    save_random_model,
    write_noise_image,
)
from style_transfer import arbitrary_net, arbitrary_training, loss_network, model_files
from style_transfer.arbitrary_net import ArbitraryTransformerNet, StylePredictor
from style_transfer.conditional_net import ConditionalTransformerNet
from utils import UserError


@functools.cache
def offline_predictor_input() -> tuple[int, list[float]]:
    """The offline loss network's number of statistics and its fingerprint (arbitrary_net.check_loss_network)."""
    probe = arbitrary_net.probe_statistics(loss_network.load_loss_network("offline"))
    return probe.shape[1], arbitrary_net.fingerprint_of(probe)


def arbitrary_args(photos: Path, out: Path, *extra: str) -> list[str]:
    return ["--datapath", str(photos), "--vgg-weights", "offline", "--image-size", "32", "--batch-size", "2",
            "--device", "cpu", "--save-dir", str(out / "models"), "--log-dir", str(out / "logs"),
            "--checkpoint-dir", str(out / "checkpoints"), "--log-interval", "1", "--precision", "fp32", *extra]


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("arbitrary")
    for i in range(4):
        write_noise_image(folder / "photos" / f"p{i}.jpg", 36, 40, seed=i)
    for i in range(3):
        write_noise_image(folder / "styles" / f"s{i}.png", 40, 48, seed=200 + i)
    return folder


@pytest.fixture(scope="module")
def arbitrary_model(pictures) -> Path:
    out = pictures / "trained"
    train.main(arbitrary_args(pictures / "photos", out, "--arbitrary", "--style-dir", str(pictures / "styles"),
                              "--max-steps", "2", "--savename", "any.pth"))
    return out / "models/any.pth"


def render(pictures: Path, model: Path, output: Path, *extra: str) -> np.ndarray:
    render_image.main(["--content-path", str(pictures / "photos/p0.jpg"), "--model", str(model),
                       "--output-path", str(output), "--device", "cpu", "--precision", "fp32", *extra])
    return np.asarray(Image.open(output)).astype(int)


def test_mixing_embeddings_is_mixing_the_predicted_scales_and_shifts():
    """The head is linear: --style-mix of pictures needs no choice between the two (the docs say why)."""
    torch.manual_seed(0)
    predictor = StylePredictor(20, [4, 8])
    a, b = predictor.embed(torch.rand(1, 20)), predictor.embed(torch.rand(1, 20))
    mixed_embedding = predictor.params(0.3 * a + 0.7 * b)
    mixed_params = 0.3 * predictor.params(a) + 0.7 * predictor.params(b)
    torch.testing.assert_close(mixed_embedding, mixed_params)


def test_training_under_autocast_predicts_the_scales_and_shifts_in_fp32_as_rendering_does():
    """A bf16 run conditions the network on the prediction rendering computes (predict, in fp32): the predictor's
    layers ran in bf16 before. (The scales then act at the activations' precision, as a conditional model's do.)"""
    torch.manual_seed(0)
    model = ArbitraryTransformerNet("offline", 12, [0.0] * 8)
    statistics = torch.rand(2, 12)
    seen = []
    model.norms[0].register_forward_hook(lambda norm, args, output: seen.append(norm.given))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.rand(2, 3, 16, 16) * 255, statistics)
    scale, shift = seen[0]
    assert scale.dtype == shift.dtype == torch.float32
    with torch.no_grad():
        expected_scale, expected_shift = model.split(model.predictor(statistics))[0]
    torch.testing.assert_close(scale, expected_scale)
    torch.testing.assert_close(shift, expected_shift)


def test_the_model_file_holds_transformer_predictor_and_loss_network_and_loads_with_weights_only(arbitrary_model):
    raw = torch.load(arbitrary_model, weights_only=True)
    assert raw["arbitrary"]["loss_network"] == "offline"
    assert any(k.startswith("predictor.") for k in raw["state_dict"])
    assert model_files.provenance_path(arbitrary_model).is_file()
    model = model_files.load_transformer(arbitrary_model, arbitrary=True)
    assert isinstance(model, ArbitraryTransformerNet)
    assert arbitrary_model.stat().st_size < 10e6
    # Trained with an output norm, whose scale and shift the predictor gives like every other norm's.
    assert raw["arbitrary"]["output_norm"] is True
    assert model.predictor.channels[model.norm_names.index("output_norm")] == 3


def test_a_model_file_from_before_the_output_norm_loads_and_freezes_without_one(pictures, tmp_path):
    torch.manual_seed(0)
    old = ArbitraryTransformerNet("offline", *offline_predictor_input(), style_size=40)
    raw = {"arbitrary": old.settings(), "state_dict": old.state_dict()}
    del raw["arbitrary"]["output_norm"]  # as files of that time hold it
    torch.save(raw, tmp_path / "old.pth")
    loaded = model_files.load_transformer(tmp_path / "old.pth", arbitrary=True)
    assert not loaded.has_output_norm and sum(loaded.predictor.channels) == 1600
    render(pictures, tmp_path / "old.pth", tmp_path / "a.png", "--style-image", f"{pictures}/styles/s0.png",
           "--save-conditional", str(tmp_path / "frozen.pth"))
    assert "output_norm.weight" not in load_state(tmp_path / "frozen.pth")["state_dict"]


@pytest.mark.parametrize("settings,reason", [({"output_norm": "yes"}, "broken (output_norm)"),
                                             ({"blend": 1}, "hold blend, unknown here"),
                                             ({"style_size": None}, "incomplete")])
def test_a_model_file_with_broken_settings_is_refused_in_one_line(tmp_path, settings, reason):
    model = ArbitraryTransformerNet("offline", *offline_predictor_input(), output_norm=True)
    torch.save({"arbitrary": {**model.settings(), **settings}, "state_dict": model.state_dict()}, tmp_path / "m.pth")
    with pytest.raises(UserError, match="is not a TransformerNet model: its arbitrary-style settings") as caught:
        model_files.load_transformer(tmp_path / "m.pth", arbitrary=True)
    assert reason in str(caught.value) and "\n" not in str(caught.value)


def test_style_pictures_render_as_their_frozen_conditional_model_and_differ(pictures, arbitrary_model, tmp_path):
    styles = f"{pictures}/styles/s0.png,{pictures}/styles/s1.png"
    frozen = tmp_path / "frozen.pth"
    mixed = render(pictures, arbitrary_model, tmp_path / "mix.png", "--style-image", styles, "--style-mix", "0.3,0.7",
                   "--save-conditional", str(frozen))
    loaded = model_files.load_transformer(frozen)
    assert isinstance(loaded, ConditionalTransformerNet) and loaded.style_names == ["s0", "s1"]
    again = render(pictures, frozen, tmp_path / "frozen.png", "--style-mix", "0.3,0.7")
    assert np.array_equal(mixed, again)
    first = render(pictures, arbitrary_model, tmp_path / "a.png", "--style-image", f"{pictures}/styles/s0.png")
    assert np.array_equal(first, render(pictures, frozen, tmp_path / "f0.png", "--style", "s0"))
    # A trained predictor gives two pictures two styles (two steps are enough to move it off the identity).
    second = render(pictures, arbitrary_model, tmp_path / "b.png", "--style-image", f"{pictures}/styles/s2.png")
    assert not np.array_equal(first, second)


def test_tiles_strength_and_preserve_color_work_with_a_style_picture(pictures, arbitrary_model, tmp_path):
    style = ["--style-image", f"{pictures}/styles/s0.png"]
    style += ["--scale", "4", "--preserve-color", "--strength", "0.5"]  # 144 x 160
    whole = render(pictures, arbitrary_model, tmp_path / "w.png", *style)
    tiled = render(pictures, arbitrary_model, tmp_path / "t.png", *style, "--tile", "128", "--tile-stats", "exact")
    assert whole.shape == tiled.shape and np.abs(whole - tiled).mean() < 8


def test_a_video_predicts_its_style_once_not_per_frame(pictures, arbitrary_model, tmp_path, monkeypatch):
    from test_render_video import make_clip

    import render_video

    calls = []
    original = StylePredictor.forward
    monkeypatch.setattr(StylePredictor, "forward", lambda self, x: calls.append(1) or original(self, x))
    clip = make_clip(tmp_path / "clip.mp4", seconds=0.5, audio=None)
    schedule = f"0:{pictures}/styles/s0.png;0.4:{pictures}/styles/s1.png"
    render_video.main(["--input", str(clip), "--model", str(arbitrary_model), "--save-name", str(tmp_path / "o.mp4"),
                       "--device", "cpu", "--style-schedule", schedule])
    assert (tmp_path / "o.mp4").is_file() and len(calls) == 2  # one per picture of the schedule


def test_add_style_keeps_the_old_styles_bit_identical_and_trains_only_the_new_one(pictures, tmp_path):
    base = save_random_conditional_model(tmp_path / "base.pth", ("warm", "cold"))
    out = tmp_path / "out"
    train.main(arbitrary_args(pictures / "photos", out, "--add-style", str(pictures / "styles/s0.png"),
                              "--init-from", str(base), "--max-steps", "3", "--savename", "added.pth"))
    before, after = load_state(base), load_state(out / "models/added.pth")
    assert after["style_names"] == ["warm", "cold", "s0"]
    changed = 0
    for key, old in before["state_dict"].items():
        new = after["state_dict"][key]
        if new.shape != old.shape:  # a norm: N + 1 rows, the first N the old ones
            assert torch.equal(new[:2], old), key
            changed += not torch.equal(new[2], old.mean(0))
        else:
            assert torch.equal(new, old), key  # the shared convolutions frozen
    assert changed > 0  # the new style trained
    assert np.array_equal(render(pictures, base, tmp_path / "a.png", "--style", "cold"),
                          render(pictures, out / "models/added.pth", tmp_path / "b.png", "--style", "cold"))


def test_add_style_to_an_arbitrary_model_starts_from_its_prediction(pictures, arbitrary_model, tmp_path):
    out = tmp_path / "out"
    style = pictures / "styles/s1.png"
    # a learning rate of 1e-30: the step changes nothing measurable (0 is refused as a learning rate)
    train.main(arbitrary_args(pictures / "photos", out, "--add-style", str(style), "--init-from",
                              str(arbitrary_model), "--max-steps", "1", "--learning-rate", "1e-30",
                              "--savename", "a.pth"))
    added = model_files.load_transformer(out / "models/a.pth")
    assert isinstance(added, ConditionalTransformerNet) and added.style_names == ["s1"]
    frozen = tmp_path / "frozen.pth"
    render(pictures, arbitrary_model, tmp_path / "x.png", "--style-image", str(style),
           "--save-conditional", str(frozen))
    expected = load_state(frozen)["state_dict"]
    assert "output_norm.weight" in expected  # the output norm's prediction too
    for key, tensor in load_state(out / "models/a.pth")["state_dict"].items():
        torch.testing.assert_close(tensor, expected[key], msg=key)


@pytest.mark.slow
def test_an_arbitrary_run_resumes_exactly(pictures, tmp_path):
    common = ("--arbitrary", "--style-dir", str(pictures / "styles"), "--checkpoint-interval", "2", "--savename", "m",
              "--epochs", "3")
    train.main(arbitrary_args(pictures / "photos", tmp_path / "full", *common, "--max-steps", "3"))
    train.main(arbitrary_args(pictures / "photos", tmp_path / "part", *common, "--max-steps", "2"))
    train.main(arbitrary_args(pictures / "photos", tmp_path / "part", *common, "--max-steps", "3", "--resume",
                              str(tmp_path / "part/checkpoints/m_step0000002.pth")))
    full, part = (load_state(tmp_path / f"{run}/models/m.pth")["state_dict"] for run in ("full", "part"))
    for key in full:
        torch.testing.assert_close(part[key], full[key], atol=1e-5, rtol=0, msg=key)


@pytest.mark.slow
def test_a_run_started_before_the_output_norm_resumes_exactly_without_one(pictures, tmp_path, monkeypatch, capsys):
    common = ("--arbitrary", "--style-dir", str(pictures / "styles"), "--checkpoint-interval", "2", "--savename", "m",
              "--epochs", "3")
    with monkeypatch.context() as before:  # train.py as it was: arbitrary networks without the output norm
        before.setattr(arbitrary_training, "ArbitraryTransformerNet",
                       lambda *args, **kwargs: ArbitraryTransformerNet(*args, **{**kwargs, "output_norm": False}))
        train.main(arbitrary_args(pictures / "photos", tmp_path / "full", *common, "--max-steps", "3"))
        train.main(arbitrary_args(pictures / "photos", tmp_path / "part", *common, "--max-steps", "2"))
    train.main(arbitrary_args(pictures / "photos", tmp_path / "part", *common, "--max-steps", "3", "--resume",
                              str(tmp_path / "part/checkpoints/m_step0000002.pth")))
    said = [line for line in capsys.readouterr().err.splitlines() if "output norm" in line]
    assert len(said) == 1 and said[0].startswith("warning: --resume: ") and said[0].endswith("goes on without one")
    full, part = (load_state(tmp_path / f"{run}/models/m.pth") for run in ("full", "part"))
    assert part["arbitrary"]["output_norm"] is False
    for key in full["state_dict"]:
        torch.testing.assert_close(part["state_dict"][key], full["state_dict"][key], atol=1e-5, rtol=0, msg=key)


def test_the_style_pictures_are_augmented_crops_of_random_sizes():
    image = torch.arange(3 * 64 * 80, dtype=torch.float32).reshape(3, 64, 80)
    generator = torch.Generator().manual_seed(0)
    crops = arbitrary_net.resized_crops([image] * 4, 32, generator)
    assert crops.shape == (4, 3, 32, 32)
    assert len({c.sum().item() for c in crops}) == 4


TRAIN_CASES = {
    "conditional": (["--arbitrary", "--conditional"], ("--conditional", "--arbitrary")),
    "stylepath": (["--arbitrary", "--stylepath", "STYLE"], ("--stylepath", "--arbitrary")),
    "style weights": (["--arbitrary", "--style-weights", "1"], ("--style-weights",)),
    "alpha": (["--arbitrary", "--alpha", "0.5"], ("--alpha",)),
    "alt": (["--arbitrary", "--alt", "2"], ("--alt",)),
    "no style dir": (["--arbitrary"], ("--style-dir",)),
    "empty style dir": (["--arbitrary", "--style-dir", "EMPTY"], ("--style-dir", "0 usable", "at least two")),
    "one usable picture": (["--arbitrary", "--style-dir", "ONE"], ("--style-dir", "1 usable", "of 2")),
    "add style without init": (["--add-style", "STYLE"], ("--init-from",)),
    "add style to a plain model": (["--add-style", "STYLE", "--init-from", "PLAIN"], ("plain model", "--add-style")),
    "unreadable add style": (["--add-style", "BROKEN", "--init-from", "CONDITIONAL"], ("cannot read image",)),
}


@pytest.mark.parametrize("case", sorted(TRAIN_CASES))
def test_train_refuses_bad_input_in_one_line_and_writes_nothing(pictures, tmp_path, capsys, case):
    extra, expected = TRAIN_CASES[case]
    (tmp_path / "empty").mkdir()
    write_noise_image(tmp_path / "one/good.png", 40, 40, seed=1)
    (tmp_path / "one/broken.png").write_bytes(b"not a picture")
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    files = {"STYLE": str(pictures / "styles/s0.png"), "EMPTY": str(tmp_path / "empty"), "ONE": str(tmp_path / "one"),
             "PLAIN": str(save_random_model(tmp_path / "plain.pth")), "BROKEN": str(tmp_path / "broken.png"),
             "CONDITIONAL": str(save_random_conditional_model(tmp_path / "cond.pth"))}
    out = tmp_path / "out"
    result = run_main_in_process(capsys, train.main, *arbitrary_args(pictures / "photos", out, "--max-steps", "1",
                                                                     *[files.get(a, a) for a in extra]))
    assert_clean_failure(result, *expected)
    assert not (out / "models").exists() or files_under(out / "models") == set()


def test_render_refuses_bad_input_in_one_line_and_writes_nothing(pictures, arbitrary_model, tmp_path, capsys):
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    plain, conditional = save_random_model(tmp_path / "plain.pth"), save_random_conditional_model(tmp_path / "c.pth")
    style = str(pictures / "styles/s0.png")
    cases = [
        ([plain, "--style-image", style], ("--style-image", "plain model", "arbitrary-style model")),
        ([conditional, "--style-image", style], ("--style-image", "conditional model", "arbitrary-style model")),
        ([arbitrary_model], ("--style-image",)),
        ([arbitrary_model, "--style-image", tmp_path / "broken.png"], ("cannot read image",)),
        ([arbitrary_model, "--style-image", tmp_path / "missing.png"], ("missing.png",)),
        ([arbitrary_model, "--style-image", style, "--style-vgg-weights", "random"],
         ("does not fit the loss network", "--vgg-weights offline")),
    ]
    for (model, *flags), expected in cases:
        result = run_main_in_process(capsys, render_image.main, "--content-path", pictures / "photos/p0.jpg",
                                     "--model", model, "--output-path", tmp_path / "out.png", "--device", "cpu", *flags)
        assert_clean_failure(result, *expected)
        assert not (tmp_path / "out.png").exists()


def test_where_a_plain_or_conditional_model_is_expected_an_arbitrary_one_is_refused_in_one_line(
        pictures, arbitrary_model, tmp_path, capsys):
    import distillation

    result = run_main_in_process(capsys, distillation.main, "--datapath", pictures / "photos", "--teachers",
                                 arbitrary_model, "--vgg-weights", "offline", "--image-size", "32", "--device", "cpu",
                                 "--save-dir", tmp_path / "models", "--max-steps", "1")
    assert_clean_failure(result, "arbitrary-style model", "--save-conditional")
    assert not (tmp_path / "models").exists() or files_under(tmp_path / "models") == set()


def test_list_styles_names_an_arbitrary_model(arbitrary_model, capsys):
    result = run_main_in_process(capsys, render_image.main, "--model", arbitrary_model, "--list-styles")
    assert result.returncode == 0 and "arbitrary-style model" in result.stdout and "--style-image" in result.stdout


def test_the_style_set_is_seeded_and_varied(tmp_path):
    import make_style_set

    for folder in ("a", "b"):
        make_style_set.main(["--output", str(tmp_path / folder), "--count", "5", "--size", "48"])
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(names) == 5
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names)
    means = [np.asarray(Image.open(tmp_path / "a" / n), np.float64).mean(axis=(0, 1)) for n in names]
    assert min(np.linalg.norm(a - b) for i, a in enumerate(means) for b in means[i + 1:]) > 1  # five palettes


def test_an_arbitrary_run_previews_each_photo_in_the_first_style_pictures(pictures, tmp_path):
    """The preview of an arbitrary model: a column per photo and per one of the first two pictures of --style-dir,
    rendered with the predictions of the network as it is at that step (before, the preview crashed the run)."""
    import json

    from PIL import Image

    train.main(arbitrary_args(pictures / "photos", tmp_path, "--arbitrary", "--style-dir", str(pictures / "styles"),
                              "--max-steps", "2", "--savename", "m", "--preview-interval", "1",
                              "--preview-images", str(pictures / "photos")))
    with Image.open(tmp_path / "logs/m_preview.jpg") as picture:
        record = json.loads(picture.info["comment"])
    labels = next(iter(record.values()))["labels"]
    assert next(iter(record.values()))["steps"] == [1, 2]
    assert labels == [f"p{i}, s{j}" for i in range(4) for j in range(2)]


def test_unseen_style_loss_compares_with_a_dedicated_model_and_says_where_the_style_loss_lies(
        pictures, arbitrary_model, tmp_path, capsys):
    """benchmarks/unseen_style_loss.py: the ratio of the two style losses, and each model's loss split by part of
    the loss network (the offline network's colour code apart) adding up to it."""
    import unseen_style_loss

    import vgg
    from style_transfer import image_io, loss_network
    from style_transfer.training_data import ImageFolderDataset

    dedicated = save_random_model(tmp_path / "dedicated" / "s0.pth", seed=3)
    record = tmp_path / "record.json"
    unseen_style_loss.main(["--arbitrary", str(arbitrary_model), "--dedicated", str(tmp_path / "dedicated"),
                            "--styles", str(pictures / "styles/s0.png"), "--datapath", str(pictures / "photos"),
                            "--image-size", "32", "--style-size", "40", "--json", str(record)])
    assert torch.is_grad_enabled()  # it used to switch gradients off for every test after it
    assert "| s0.png | arbitrary | " in capsys.readouterr().out
    row = json.loads(record.read_text())["rows"][0]
    network = loss_network.load_loss_network("offline")
    photos = ImageFolderDataset(pictures / "photos", 32)
    style = image_io.image_to_tensor(image_io.load_rgb(pictures / "styles/s0.png", 40)).unsqueeze(0)
    with torch.no_grad():
        grams = [vgg.gram_matrix(f) for f in network(style)]
        stylised = model_files.load_transformer(dedicated)(torch.stack([photos[i] for i in range(len(photos))]))
        expected = vgg.style_loss(network(stylised), [grams], [1.0]).item()
    weight = model_files.read_provenance(arbitrary_model)["style_weight"]
    assert row["dedicated_style_loss"] == pytest.approx(weight * expected, rel=1e-4)
    assert row["ratio"] == pytest.approx(row["arbitrary_style_loss"] / row["dedicated_style_loss"])
    for model in ("arbitrary", "dedicated"):
        parts = row[f"{model}_style_parts"]
        assert list(parts)[0] == "colour code" and len(parts) == 5
        assert sum(parts.values()) == pytest.approx(row[f"{model}_style_loss"])


def test_the_render_benchmark_counts_the_networks_arithmetic():
    """benchmarks/arbitrary_render.py's count behind docs/styles.md's "0.008%": every convolution's multiply-adds,
    here against the layers of transformer_net.py worked out by hand at 64x64 (3 -> 32 -> 64 -> 128 channels, ten
    residual convolutions at 16x16, back up to 3)."""
    import arbitrary_render

    from transformer_net import TransformerNet

    by_hand = 2 * (64 * 64 * 32 * 3 * 81 + 32 * 32 * 64 * 32 * 9 + 16 * 16 * 128 * 64 * 9 + 10 * 16 * 16 * 128 * 128 * 9
                   + 32 * 32 * 64 * 128 * 9 + 64 * 64 * 32 * 64 * 9 + 64 * 64 * 3 * 32 * 81)
    shares = arbitrary_render.arithmetic_shares(TransformerNet(output_norm=True), torch.zeros(1, 3, 128, 96))
    assert shares["conv_gflops_per_frame"] * 1e9 == pytest.approx(by_hand * 128 * 96 / (64 * 64))
    assert shares["output_norm_share"] == pytest.approx(8 * 3 * 64 * 64 / by_hand)


def test_first_reached_reads_the_share_at_a_step_and_where_each_loss_is_reached(tmp_path, capsys):
    """benchmarks/first_reached.py behind docs/styles.md's --add-style row: the row at --at-step against the goal
    (the mean of the reference's last --window rows), the first rows at or below its style and total losses (not
    a later one), time shares from the logged seconds, "not reached" where no row gets there, and one-line errors."""
    import first_reached

    def rows(seconds_per_row, *values):
        return [{"step": 20.0 * (i + 1), "elapsed_s": seconds_per_row * (i + 1), "style": s, "total": t}
                for i, (s, t) in enumerate(values)]

    reference = rows(10.0, (900, 1500), (400, 700), (300, 600))  # 60 steps, 30 s
    fast = rows(5.0, (500, 650), (350, 590), (300, 560), (310, 580), (280, 550))
    lines = first_reached.report(fast, reference, at_step=20)
    assert "style loss 500.0 = 1.67 x" in lines[1] and "total 650.0 = 1.08 x" in lines[1]
    assert "33.3% of the steps" in lines[1] and "16.7% of the time" in lines[1]
    assert lines[2].startswith("style loss: reached at step 60 (100.0% of the steps), 15 s (50.0% of the time)")
    assert lines[3].startswith("total loss: reached at step 40 (66.7% of the steps)")
    windowed = first_reached.report(fast, reference, at_step=20, window=2)  # goal: style 350, total 650
    assert "(steps 21 to 60, of 30 s in all), their mean: style loss 350.0, total 650.0" in windowed[0]
    assert "= 1.43 x" in windowed[1]
    assert windowed[2].startswith("style loss: reached at step 40")  # at the goal exactly: reached
    assert windowed[3].startswith("total loss: reached at step 20")
    short = first_reached.report(fast[:1], reference, None)
    assert "style loss: not reached in its 20 steps" in short[1] and "total loss: not reached" in short[2]
    with pytest.raises(UserError, match="--at-step 30.*steps 20 to 100"):
        first_reached.report(fast, reference, at_step=30)

    logs = []
    for name, log in (("fast.csv", fast), ("reference.csv", reference)):
        path = tmp_path / f"a log {name}"  # a path with a space
        path.write_text("step,elapsed_s,content,style,total\n" + "".join(
            f"{r['step']},{r['elapsed_s']},1.0,{r['style']},{r['total']}\n" for r in log))
        logs.append(str(path))
    first_reached.main([*logs, "--at-step", "20"])
    assert capsys.readouterr().out.splitlines()[2:] == lines
    broken = tmp_path / "broken.csv"
    broken.write_text("step,elapsed_s,content\n20,1.0,3.0\n")
    with pytest.raises(UserError, match="not a train.py log .*style, total"):
        first_reached.main([str(broken), logs[1]])
    broken.write_text("step,elapsed_s,content,style,total\n20,1.0,3.0,abc,4.0\n")
    with pytest.raises(UserError, match="not a train.py log .*'abc'"):
        first_reached.main([str(broken), logs[1]])
