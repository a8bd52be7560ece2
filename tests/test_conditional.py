"""Conditional models (conditional_net): one network, N styles, chosen or mixed per call; their files, and
making them with train.py --conditional and distillation.py --conditional."""

import copy
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import distillation
import train
from conftest import (
    ROOT,
    assert_clean_failure,
    files_under,
    load_state,
    random_model,
    run_main_in_process,
    save_random_conditional_model,
    save_random_model,
    train_args,
    write_noise_image,
)
from style_transfer import conditional_net, image_io, model_files, rendering
from style_transfer.conditional_net import ConditionalTransformerNet, conditional_state, one_hot, styles_for_step
from transformer_net import InstanceNorm, TransformerNet
from vgg import gram_matrix, per_image_style_loss, style_loss


def two_style_model(output_norm: bool = False) -> ConditionalTransformerNet:
    """random_model(0) with two clearly different styles (and an output norm: transformer_net.py)."""
    plain = TransformerNet(output_norm)
    plain.load_state_dict(random_model(0).state_dict(), strict=not output_norm)  # the output norm's start: 1, 0
    model = ConditionalTransformerNet(["warm", "cold"], output_norm)
    model.load_state_dict(conditional_state(plain.state_dict(), 2))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for norm in model.norms:
            norm.weight.mul_(0.5 + torch.rand(norm.weight.shape, generator=generator))
            norm.bias.add_(torch.randn(norm.bias.shape, generator=generator))
    return model.eval()


def plain_with_norms_of(model: ConditionalTransformerNet, mix: list[float]) -> TransformerNet:
    """The plain network whose every norm has the mix's weighted sum of the styles' scales and shifts."""
    state = {key: torch.tensor(mix) @ tensor if tensor.dim() == 2 else tensor
             for key, tensor in model.state_dict().items()}
    plain = TransformerNet(model.has_output_norm).eval()
    plain.load_state_dict(state)
    return plain


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    torch.manual_seed(3)
    return torch.nn.functional.interpolate(torch.rand(2, 3, 5, 6) * 255, size=(28, 36), mode="bicubic").clamp(0, 255)


# ---------------------------------------------------------------- the network

def test_a_style_costs_a_few_thousand_parameters_under_the_plain_networks_names():
    plain, conditional = TransformerNet(), ConditionalTransformerNet(["a", "b", "c"])
    extra = sum(p.numel() for p in conditional.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 2 * 3200  # two styles more: one scale and one shift per channel of the 15 norms
    assert 3200 / sum(p.numel() for p in plain.parameters()) < 0.01
    assert list(conditional.state_dict()) == list(plain.state_dict())  # the example's names, nothing added
    assert conditional.state_dict()["res3.in2.weight"].shape == (3, 128)
    # Each norm normalises with a plain InstanceNorm2d, which tiled rendering can take over.
    inner = [m for m in conditional.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert len(inner) == 15 and not any(m.affine for m in inner)


def test_a_one_style_conditional_network_renders_as_the_plain_network(photos):
    plain = random_model(0)
    conditional = ConditionalTransformerNet(["only"])
    conditional.load_state_dict(conditional_state(plain.state_dict(), 1))
    with torch.no_grad():
        torch.testing.assert_close(conditional.eval()(photos), plain(photos), atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("output_norm", [False, True], ids=["", "output-norm"])
@pytest.mark.parametrize("mix", [[1.0, 0.0], [0.0, 1.0], [0.3, 0.7]])
def test_a_mix_renders_as_the_weighted_sum_of_the_styles_scales_and_shifts(photos, mix, output_norm):
    model = two_style_model(output_norm)
    model.set_style_mix(mix)
    with torch.no_grad():
        torch.testing.assert_close(model(photos), plain_with_norms_of(model, mix)(photos), atol=1e-3, rtol=1e-5)


def test_a_model_with_an_output_norm_saves_and_loads_as_one(photos, tmp_path):
    model = two_style_model(output_norm=True)
    model_files.save_model(model, tmp_path / "m.pth", {"script": "test"})
    loaded = model_files.load_transformer(tmp_path / "m.pth")
    assert isinstance(loaded, ConditionalTransformerNet) and loaded.has_output_norm
    for mix in ([1.0, 0.0], [0.3, 0.7]):
        model.set_style_mix(mix)
        loaded.set_style_mix(mix)
        with torch.no_grad():
            torch.testing.assert_close(loaded(photos), model(photos))


def test_each_image_of_a_batch_can_have_its_own_mix(photos):
    model = two_style_model()
    mixes = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    with torch.no_grad():
        together = model(photos, mixes)
        model.set_style_mix(mixes)  # as render_video.py --style-schedule sets it: one row per frame
        set_together = model(photos)
        for i in range(2):
            alone = plain_with_norms_of(model, mixes[i].tolist())(photos[i:i + 1])
            torch.testing.assert_close(together[i:i + 1], alone, atol=1e-3, rtol=1e-5)
            torch.testing.assert_close(set_together[i:i + 1], alone, atol=1e-3, rtol=1e-5)


def normalise_by_the_top_left_quarter(model: torch.nn.Module) -> None:
    """Tell every InstanceNorm of `model` to normalise with other statistics (as tiled rendering does): those of
    the top-left quarter of its input only."""
    def top_left_quarter(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        part = x[..., :x.shape[-2] // 2, :x.shape[-1] // 2]
        return part.mean((-2, -1), keepdim=True), part.var((-2, -1), unbiased=False, keepdim=True)

    for norm in [m for m in model.modules() if isinstance(m, InstanceNorm)]:
        norm.statistics = top_left_quarter


def test_statistics_given_to_every_instance_norm_apply_to_conditional_networks_too(photos):
    model = two_style_model()
    model.set_style_mix([0.3, 0.7])
    plain = plain_with_norms_of(model, [0.3, 0.7])
    with torch.no_grad():
        before = model(photos)
        normalise_by_the_top_left_quarter(model)
        normalise_by_the_top_left_quarter(plain)
        after = model(photos)
        torch.testing.assert_close(after, plain(photos), atol=1e-3, rtol=1e-5)
    assert (after - before).abs().mean() > 1  # the change took effect


def test_the_styles_differ_and_the_first_is_the_default(photos):
    model = two_style_model()
    with torch.no_grad():
        default = model(photos)
        model.set_style_mix([0, 1])
        second = model(photos)
        model.set_style_mix([1, 0])
        first = model(photos)
    assert torch.equal(default, first)
    assert (first - second).abs().mean() > 5


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("clang++")), reason="torch.compile needs a C++ compiler")
def test_a_compiled_network_follows_every_new_mix(photos):
    """render_video.py --compile --style-schedule sets a new mix per batch on a network compiled with freezing."""
    model = two_style_model()
    expected = {}
    with torch.no_grad():
        for name, mix in (("first", [1.0, 0.0]), ("second", [0.0, 1.0]), ("per frame", [[0.2, 0.8], [0.9, 0.1]])):
            model.set_style_mix(mix)
            expected[name] = model(photos)
    compiled = rendering.prepare_for_rendering(model, "fp32", compile=True)
    for name, mix in (("first", [1.0, 0.0]), ("second", [0.0, 1.0]), ("per frame", [[0.2, 0.8], [0.9, 0.1]])):
        model.set_style_mix(mix)
        torch.testing.assert_close(rendering.stylize(compiled, photos), expected[name].clamp(0, 255), atol=1e-3,
                                   rtol=1e-5, msg=name)


def test_training_gradients_reach_only_the_styles_of_the_batch(photos):
    model = two_style_model().train()
    model(photos, one_hot([0, 0], 2)).mean().backward()
    for norm in model.norms:
        assert norm.weight.grad[0].abs().sum() > 0 and norm.weight.grad[1].abs().sum() == 0
    conv = model.conv1.conv2d.weight.grad
    assert conv is not None and conv.abs().sum() > 0  # the convolutions are shared by all styles


def test_styles_go_round_robin_and_several_processes_give_those_of_one(monkeypatch):
    assert [styles_for_step(step, 4, 3, 100).tolist() for step in range(3)] == [[0, 1, 2, 0], [1, 2, 0, 1],
                                                                                 [2, 0, 1, 2]]
    assert styles_for_step(1, 4, 2, 7).tolist() == [0, 1, 0]  # the short batch at an epoch's end
    one_process = [styles_for_step(step, 4, 3, 100).tolist() for step in range(3)]
    monkeypatch.setattr(conditional_net.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(conditional_net.dist, "get_world_size", lambda: 2)
    parts = {}
    for rank in (0, 1):
        monkeypatch.setattr(conditional_net.dist, "get_rank", lambda rank=rank: rank)
        parts[rank] = [styles_for_step(step, 2, 3, 100).tolist() for step in range(3)]
    assert [parts[0][step] + parts[1][step] for step in range(3)] == one_process


def test_each_image_is_measured_against_its_own_styles_grams(photos):
    torch.manual_seed(0)
    features = [torch.rand(2, c, 6, 6) for c in (4, 8, 8, 16)]
    grams = [[gram_matrix(torch.rand(1, c, 6, 6)) for c in (4, 8, 8, 16)] for _ in range(3)]
    loss = per_image_style_loss(features, grams, torch.tensor([2, 0]))
    alone = [style_loss([f[i:i + 1] for f in features], [grams[s]], [1.0]) for i, s in enumerate([2, 0])]
    torch.testing.assert_close(loss, (alone[0] + alone[1]) / 2)
    same = per_image_style_loss(features, grams, torch.tensor([1, 1]))
    torch.testing.assert_close(same, style_loss(features, [grams[1]], [1.0]))


# ---------------------------------------------------------------- files

@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_a_model_file_holds_the_style_names_and_loads_with_weights_only(tmp_path, photos, fp16):
    model = two_style_model()
    model_files.save_model(model, tmp_path / "two.pth", {"script": "test"}, fp16=fp16)
    model_files.save_model(random_model(0), tmp_path / "plain.pth", {"script": "test"}, fp16=fp16)
    raw = torch.load(tmp_path / "two.pth", weights_only=True)
    assert raw["style_names"] == ["warm", "cold"]
    loaded = model_files.load_transformer(tmp_path / "two.pth")
    assert isinstance(loaded, ConditionalTransformerNet) and loaded.style_names == ["warm", "cold"]
    loaded.set_style_mix([0.4, 0.6])
    model.set_style_mix([0.4, 0.6])
    with torch.no_grad():
        torch.testing.assert_close(loaded(photos), model(photos), atol=1 if fp16 else 1e-4, rtol=0)
    growth = (tmp_path / "two.pth").stat().st_size / (tmp_path / "plain.pth").stat().st_size - 1
    assert 0 < growth < 0.02
    assert json.loads((tmp_path / "two.json").read_text()) == {"script": "test"}


def test_a_checkpoint_of_a_conditional_run_loads_as_a_conditional_model(tmp_path):
    state = two_style_model().state_dict()
    torch.save({"model": state, "optimizer": {}, "step": 2}, tmp_path / "checkpoint.pth")
    loaded = model_files.load_transformer(tmp_path / "checkpoint.pth")
    assert isinstance(loaded, ConditionalTransformerNet) and loaded.style_names == ["style0", "style1"]
    checkpoint = model_files.load_checkpoint(tmp_path / "checkpoint.pth", ConditionalTransformerNet(["a", "b"]))
    assert checkpoint["step"] == 2


@pytest.mark.parametrize("kind,reason", [
    ("names of another count", "names 3 styles but holds 2"),
    ("names that are not text", "style_names are not a list of names"),
])
def test_a_conditional_file_that_does_not_add_up_is_refused_in_one_line(tmp_path, kind, reason):
    names = ["a", "b", "c"] if kind == "names of another count" else [1, 2]
    torch.save({"style_names": names, "state_dict": two_style_model().state_dict()}, tmp_path / "m.pth")
    with pytest.raises(model_files.UserError) as error:
        model_files.load_transformer(tmp_path / "m.pth")
    assert reason in str(error.value) and "\n" not in str(error.value)


# ---------------------------------------------------------------- train.py --conditional

def test_conditional_training_writes_one_model_with_every_style_named(tmp_path, dataset_dir, style_files):
    train.main(train_args(dataset_dir, tmp_path, style_files[:2], "--conditional", "--max-steps", "2",
                          "--savename", "both", "--save-fp16"))
    model = model_files.load_transformer(tmp_path / "models/both.pth")
    assert isinstance(model, ConditionalTransformerNet) and model.style_names == ["style 0", "style 1"]
    assert torch.load(tmp_path / "models/both.pth", weights_only=True)["state_dict"]["in1.weight"].dtype == \
        torch.float16
    provenance = json.loads((tmp_path / "models/both.json").read_text())
    assert provenance["conditional"] is True and provenance["steps"] == 2
    assert [s["name"] for s in provenance["styles"]] == ["style 0", "style 1"]
    # after two steps of batch 2, style by style in turn, both styles have been trained
    for norm in model.norms:
        assert not torch.equal(norm.weight[0], torch.ones_like(norm.weight[0]))
        assert not torch.equal(norm.weight[1], torch.ones_like(norm.weight[1]))
    with open(tmp_path / "logs/both.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(r["step"]) for r in rows] == [1, 2] and {"content", "style", "total"} <= rows[0].keys()


FLOAT64_TRAIN = """import sys
sys.path.insert(0, {root!r})
import torch
torch.set_default_dtype(torch.float64)
import train, utils
utils.run_main(train.main)
"""


def test_a_one_style_conditional_run_trains_as_a_plain_run(tmp_path, dataset_dir, style_files):
    """In float64, where rounding stays far below Adam's epsilon (see tests/test_distributed.py: in float32,
    weights whose true gradient is zero, such as the biases before a norm, move by rounding noise times the
    learning rate)."""
    script = tmp_path / "train_float64.py"
    script.write_text(FLOAT64_TRAIN.format(root=str(ROOT)))
    for run, extra in (("plain", []), ("cond", ["--conditional"])):
        result = subprocess.run([sys.executable, str(script), *train_args(
            dataset_dir, tmp_path / run, style_files[:1], "--max-steps", "2", "--savename", "m", "--precision",
            "fp32", *extra)], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    plain = load_state(tmp_path / "plain/models/m.pth")
    conditional = load_state(tmp_path / "cond/models/m.pth")["state_dict"]
    assert conditional["conv1.conv2d.weight"].dtype == torch.float64
    for key, tensor in plain.items():
        torch.testing.assert_close(conditional[key].reshape(tensor.shape), tensor, atol=1e-6, rtol=0, msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("photos,per_process", [(4, 1), (6, 2)], ids=["even", "ragged last step"])
def test_conditional_training_under_torchrun_equals_one_process(tmp_path, style_files, photos, per_process):
    """2 processes of batch b give each image the style 1 process of batch 2b gives it, so the same weights; also
    where the last global batch of an epoch is ragged (6 photos at a global batch of 4: 2 left, 1 per process,
    where process 1's image took the style of position 6 instead of 5)."""
    for i in range(photos):
        write_noise_image(tmp_path / "photos" / f"{i}.jpg", 40, 40, seed=i)
    script = tmp_path / "train_float64.py"
    script.write_text(FLOAT64_TRAIN.format(root=str(ROOT)))
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    for name, launcher, batch in (("one", [], str(2 * per_process)), ("two", torchrun, str(per_process))):
        result = subprocess.run([sys.executable, *launcher, str(script), *train_args(
            tmp_path / "photos", tmp_path / name, style_files[:2], "--conditional", "--max-steps", "3",
            "--epochs", "3", "--batch-size", batch, "--savename", "m", "--precision", "fp32")],
            capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert result.returncode == 0, result.stderr[-3000:]
    one = load_state(tmp_path / "one/models/m.pth")["state_dict"]
    two = load_state(tmp_path / "two/models/m.pth")["state_dict"]
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-5, rtol=0, msg=key)


@pytest.mark.slow
def test_run_training_sh_trains_a_conditional_model_with_conditional_1(tmp_path, dataset_dir, style_files):
    if not (Path(sys.prefix) / ".requirements.sha256").exists():
        pytest.skip("not running inside a venv made by setup_env.sh")
    env = {**os.environ, "VENV_DIR": sys.prefix, "CONDITIONAL": "1", "DEVICE": "cpu", "DATAPATH": str(dataset_dir),
           "STYLES": f"{style_files[0]},{style_files[1]}", "VGG_WEIGHTS": "random", "IMAGE_SIZE": "32",
           "BATCH_SIZE": "2", "SAVE_DIR": str(tmp_path / "models"), "SAVENAME": "both.pth"}
    result = subprocess.run(["bash", str(ROOT / "run_training.sh"), "--max-steps", "1", "--log-dir",
                             str(tmp_path / "logs"), "--checkpoint-dir", str(tmp_path / "checkpoints")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert model_files.load_transformer(tmp_path / "models/both.pth").style_names == ["style 0", "style 1"]


def test_the_style_names_flag_names_them_and_repeated_file_names_stay_apart(tmp_path, dataset_dir, style_files):
    train.main(train_args(dataset_dir, tmp_path / "a", style_files[:2], "--conditional", "--max-steps", "1",
                          "--savename", "m", "--style-names", "glass,strokes"))
    assert model_files.load_transformer(tmp_path / "a/models/m.pth").style_names == ["glass", "strokes"]
    assert conditional_net.style_names(None, [Path("a/s.png"), Path("b/s.png"), Path("s.jpg")]) == ["s", "s-2", "s-3"]


def test_a_conditional_run_resumes_exactly(tmp_path, dataset_dir, style_files):
    common = ("--conditional", "--epochs", "3", "--checkpoint-interval", "2", "--savename", "m")
    train.main(train_args(dataset_dir, tmp_path / "full", style_files[:2], *common, "--max-steps", "3"))
    train.main(train_args(dataset_dir, tmp_path / "part", style_files[:2], *common, "--max-steps", "2"))
    checkpoint = tmp_path / "part/checkpoints/m_step0000002.pth"
    train.main(train_args(dataset_dir, tmp_path / "part", style_files[:2], *common, "--max-steps", "3",
                          "--resume", str(checkpoint)))
    full = load_state(tmp_path / "full/models/m.pth")["state_dict"]
    part = load_state(tmp_path / "part/models/m.pth")["state_dict"]
    for key in full:
        torch.testing.assert_close(part[key], full[key], atol=1e-5, rtol=0, msg=key)


@pytest.mark.parametrize("case", ["style weights", "alpha", "alt", "names of another count", "names without",
                                  "plain checkpoint"])
def test_conditional_training_refuses_flags_that_do_not_fit_in_one_line(tmp_path, dataset_dir, style_files, capsys,
                                                                         case):
    extra, expected = {
        "style weights": (["--conditional", "--style-weights", "0.3,0.7"], ("--style-weights", "--style-mix")),
        "alpha": (["--conditional", "--alpha", "0.3"], ("--alpha",)),
        "alt": (["--conditional", "--alt", "2"], ("--alt",)),
        "names of another count": (["--conditional", "--style-names", "a,b,c"], ("--style-names", "2 different")),
        "names without": (["--style-names", "a,b"], ("--style-names", "--conditional")),
        "plain checkpoint": (["--conditional", "--resume", ""], ("--resume", "a plain model",
                                                                 "a conditional model of 2 styles")),
    }[case]
    if case == "plain checkpoint":
        checkpoint = tmp_path / "plain.pth"
        torch.save({"model": TransformerNet().state_dict(), "optimizer": {}, "step": 1}, checkpoint)
        extra[-1] = str(checkpoint)
    out = tmp_path / "out"
    result = run_main_in_process(capsys, train.main, *train_args(dataset_dir, out, style_files[:2], "--max-steps",
                                                                 "1", *extra))
    assert_clean_failure(result, *expected)
    assert not (out / "models").exists() or files_under(out / "models") == set()


# ---------------------------------------------------------------- distillation.py --conditional

@pytest.fixture
def teachers(tmp_path) -> list[Path]:
    colours = [(220.0, 60.0, 40.0), (30.0, 90.0, 210.0)]
    return [save_random_model(tmp_path / "teachers" / f"teacher {i}.pth", 10 + i, gain=1, bias=c)
            for i, c in enumerate(colours)]


def distil_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--datapath", str(data), "--vgg-weights", "random", "--image-size", "32", "--batch-size", "2",
            "--device", "cpu", "--save-dir", str(out / "models"), "--log-dir", str(out / "logs"),
            "--checkpoint-dir", str(out / "checkpoints"), "--log-interval", "1", "--savename", "student", *extra]


def test_style_i_of_a_conditional_student_learns_teacher_i(tmp_path):
    """Two teachers that differ in colour only; the student starts as the first (--init-from), so its second style
    has everything to learn, and must learn it without taking the first style along."""
    teachers = [save_random_model(tmp_path / "teachers" / f"{name}.pth", 10, bias=colour)
                for name, colour in (("red", (220.0, 60.0, 40.0)), ("blue", (30.0, 90.0, 210.0)))]
    for i in range(2):
        write_noise_image(tmp_path / "fixed" / f"{i}.png", 32, 32, seed=i)
    distillation.main(distil_args(tmp_path / "fixed", tmp_path, "--teachers", ",".join(map(str, teachers)),
                                  "--conditional", "--init-from", str(teachers[0]), "--max-steps", "20",
                                  "--epochs", "20", "--lr", "1e-2", "--pixel-weight", "1"))
    student = model_files.load_transformer(tmp_path / "models/student.pth")
    assert student.style_names == ["red", "blue"]
    photos = sorted((tmp_path / "fixed").iterdir())
    images = torch.stack([image_io.image_to_tensor(image_io.load_rgb(p)) for p in photos])
    with torch.no_grad():
        targets = [model_files.load_transformer(t)(images) for t in teachers]
        for style in range(2):
            student.set_style_mix(one_hot([style], 2)[0])
            result = student(images)
            own, other = ((result - targets[t]).pow(2).mean().item() for t in (style, 1 - style))
            assert own < 0.5 * other, (style, own, other)


def test_a_plain_model_starts_every_style_of_a_conditional_student(tmp_path, dataset_dir, teachers):
    distillation.main(distil_args(dataset_dir, tmp_path, "--teachers", ",".join(map(str, teachers)), "--conditional",
                                  "--init-from", str(teachers[0]), "--max-steps", "1", "--lr", "1e-12"))
    student = load_state(tmp_path / "models/student.pth")["state_dict"]
    start = load_state(teachers[0])
    for key, tensor in start.items():
        expected = tensor.expand_as(student[key]) if student[key].dim() == 2 else tensor
        torch.testing.assert_close(student[key], expected, atol=1e-6, rtol=0, msg=key)


def test_conditional_distillation_refuses_teacher_weights_in_one_line(tmp_path, dataset_dir, teachers, capsys):
    result = run_main_in_process(capsys, distillation.main, *distil_args(
        dataset_dir, tmp_path / "out", "--teachers", ",".join(map(str, teachers)), "--conditional",
        "--teacher-weights", "0.5,0.5"))
    assert_clean_failure(result, "--teacher-weights", "--style-mix")
    assert not (tmp_path / "out").exists()


def test_a_conditional_teacher_is_refused_as_start_of_a_plain_student(tmp_path, dataset_dir, teachers, capsys):
    conditional = save_random_conditional_model(tmp_path / "conditional.pth")
    result = run_main_in_process(capsys, distillation.main, *distil_args(
        dataset_dir, tmp_path / "out", "--teachers", ",".join(map(str, teachers)), "--init-from", str(conditional)))
    assert_clean_failure(result, "--init-from", "conditional", "--conditional")


def test_deep_copies_keep_their_own_mix(photos):
    model = two_style_model()
    twin = copy.deepcopy(model)
    twin.set_style_mix([0, 1])
    with torch.no_grad():
        assert (model(photos) - twin(photos)).abs().mean() > 5
    assert all(norm in twin.modules() for norm in twin.norms)

