"""What each training step makes, and where (issue 22): the per-step tensors (styles, their one-hot rows, the
stability loss's random views) made on the training device, without copies from the host; under torchrun, the
styles of the images of a ragged last step and the stability loss's random numbers per process; the RNG state a
checkpoint keeps; --compile's short last batch of an epoch padded to the full one."""

from pathlib import Path

import pytest
import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

import distillation
import train
from conftest import train_args, write_noise_image
from style_transfer import conditional_net, temporal_loss, training_checkpoint
from style_transfer.conditional_net import ConditionalTransformerNet, batch_positions, one_hot, styles_for_step
from style_transfer.training_data import EpochBatchSampler
from vgg import gram_matrix, per_image_style_loss


class DeviceCrossings(TorchDispatchMode):
    """Records every operation that takes or makes tensors on more than one device (a copy from the host, an index
    tensor on the CPU for a tensor on the device), and every tensor made on the CPU."""

    def __init__(self):
        super().__init__()
        self.crossings: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        devices = {t.device.type for t in pytree.tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)}
        if len(devices) > 1 or "cpu" in devices:
            self.crossings.append(f"{func} on {sorted(devices)}")
        return out


def simulate_ranks(monkeypatch: pytest.MonkeyPatch, world: int) -> None:
    monkeypatch.setattr(conditional_net.dist, "is_initialized", lambda: world > 1)
    monkeypatch.setattr(conditional_net.dist, "get_world_size", lambda: world)


@pytest.mark.filterwarnings("ignore:.*meta")
def test_the_per_step_tensors_are_made_on_the_training_device_without_host_copies():
    """On the `meta` device as a stand-in for a GPU: a conditional step's styles and one-hot rows, the network and
    the per-image style loss, distillation's per-teacher targets and the stability loss's random views are made
    there; nothing is made on the host and copied over (on CUDA each such copy waits for the GPU)."""
    meta = torch.device("meta")
    model = ConditionalTransformerNet(["a", "b", "c"]).to(meta)
    content = torch.empty(4, 3, 16, 16, device=meta)
    grams = [[gram_matrix(torch.empty(1, c, 4, 4, device=meta)) for c in (4, 8)] for _ in range(3)]
    with DeviceCrossings() as watch:
        styles = styles_for_step(5, 4, 3, 100, meta)
        mix = one_hot(styles, 3)
        stylised = model(content, mix)
        loss = per_image_style_loss([torch.empty(4, c, 4, 4, device=meta) for c in (4, 8)], grams, styles)
        theta = temporal_loss.random_views(content)
        moved, inside = temporal_loss.transform(content, theta)
        teachers = [lambda x: x * 2, lambda x: x * 3, lambda x: x * 4]
        targets = distillation.teacher_targets(teachers, [], content, batch_positions(5, 4, 100))
    assert watch.crossings == []
    for tensor in (styles, mix, stylised, loss, theta, moved, inside, targets[0][0]):
        assert tensor.device == meta


def test_one_hot_and_distillations_targets_follow_the_round_robin_styles():
    styles = styles_for_step(1, 4, 3, 10)
    assert torch.equal(one_hot(styles, 3), torch.nn.functional.one_hot(styles, 3).float())
    content = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2).contiguous()
    teachers = [lambda x, k=k: x * 0 + k for k in range(3)]  # teacher k paints everything k
    target, weight = distillation.teacher_targets(teachers, [], content, batch_positions(1, 4, 10))[0]
    assert weight == 1.0 and target[:, 0, 0, 0].tolist() == styles.float().tolist()


@pytest.mark.parametrize("images", [5, 6, 7, 8, 9])
def test_a_ragged_last_step_gives_every_image_the_style_one_process_gives_it(monkeypatch, images):
    """2 processes at batch 2 against 1 at batch 4, over two epochs: the styles of the images each process holds
    (as EpochBatchSampler hands them out, padding left out) equal one process's, also on the ragged last step,
    where process 0 holds more images than process 1 (or process 1 only padding)."""
    simulate_ranks(monkeypatch, 1)
    one = EpochBatchSampler(images, 4, seed=0, epoch=0)
    steps = 2 * one.steps_per_epoch()
    expected = [styles_for_step(step, 4, 3, images).tolist() for step in range(steps)]
    simulate_ranks(monkeypatch, 2)
    parts: dict[int, list[list[int]]] = {}
    for rank in (0, 1):
        monkeypatch.setattr(conditional_net.dist, "get_rank", lambda rank=rank: rank)
        sampler = EpochBatchSampler(images, 2, seed=0, epoch=0, rank=rank, world_size=2)
        batches = list(sampler) * 2  # two epochs: the sizes repeat
        parts[rank] = []
        for step in range(steps):
            styles = styles_for_step(step, 2, 3, images).tolist()
            assert len(styles) == len(batches[step])  # one style per image the process holds
            keep = sampler.part(step % sampler.steps_per_epoch())[1]  # 0: padding only
            parts[rank].append(styles[:keep])
    assert [parts[0][step] + parts[1][step] for step in range(steps)] == expected


def perturbed_inputs(rank: int, step: int, seed: int = 42) -> torch.Tensor:
    """The perturbed copies the stability loss of process `rank` feeds the network at `step`."""
    seen = []

    def network(batch: torch.Tensor) -> torch.Tensor:
        seen.append(batch)
        return batch

    losses = temporal_loss.with_stability_loss(lambda net, batch, s: {"total": net(batch).mean()}, 1.0, seed, rank)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255
    losses(network, images, step)
    return seen[0][2:]


def test_every_process_draws_its_own_stability_changes_and_a_resumed_run_draws_the_same():
    """Under torchrun every process seeded one generator alike, so all drew the same shifts, zooms, rotations and
    noise. Now a step's draws depend on (seed + rank, step) alone: other per process, the same again when the
    run resumes at that step (a fresh loss function, as after a restart), whatever was drawn before."""
    torch.manual_seed(0)
    first = perturbed_inputs(rank=0, step=7)
    torch.manual_seed(1)  # the global RNG does not matter
    assert torch.equal(perturbed_inputs(rank=0, step=7), first)
    assert not torch.allclose(perturbed_inputs(rank=1, step=7), first)
    assert not torch.allclose(perturbed_inputs(rank=0, step=8), first)
    assert not torch.allclose(perturbed_inputs(rank=0, step=7, seed=43), first)


def test_a_checkpoint_keeps_the_cpu_rng_and_on_cuda_every_gpus_rng(monkeypatch):
    """On the CPU the state of the CPU's generator round-trips; with the device CUDA (stood in for here) the
    checkpoint also holds torch.cuda.get_rng_state_all() and resume puts it back, GPU by GPU; a checkpoint without
    it (CPU-made or older) resumes on CUDA too."""
    torch.manual_seed(5)
    saved = training_checkpoint.rng_state(torch.device("cpu"))
    assert "cuda_rng" not in saved
    expected = torch.rand(3)
    torch.manual_seed(6)
    training_checkpoint.restore_rng(saved, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)

    gpu_states = [torch.tensor([1, 2], dtype=torch.uint8), torch.tensor([3, 4], dtype=torch.uint8)]
    restored = {}
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: gpu_states)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, index: restored.__setitem__(index, state))
    cuda = torch.device("cuda")
    saved = training_checkpoint.rng_state(cuda)
    assert saved["cuda_rng"] is gpu_states
    training_checkpoint.restore_rng(saved, cuda)
    assert restored == {0: gpu_states[0], 1: gpu_states[1]}
    restored.clear()
    training_checkpoint.restore_rng({"torch_rng": torch.get_rng_state()}, cuda)
    assert restored == {}


REAL_COMPILE = torch.compile


def compiles_of_a_run(monkeypatch, tmp_path, photos: Path, style: Path, *flags: str) -> list[int]:
    """The batch size of every graph torch.compile compiled during a --compile training run at batch 4 (counted
    with a backend of our own, which runs the graph as it is: dynamo recompiles for a new shape all the same)."""
    import torch._dynamo

    compiled = []

    def counting_backend(graph: torch.fx.GraphModule, example_inputs: list) -> object:
        compiled.append(next(t.shape[0] for t in example_inputs if isinstance(t, torch.Tensor) and t.dim() == 4
                             and t.shape[1] == 3))  # the batch of images
        return graph.forward

    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: REAL_COMPILE(
        model, backend=counting_backend, dynamic=kwargs.get("dynamic")))
    torch._dynamo.reset()
    train.main(train_args(photos, tmp_path, [style], "--compile", "--batch-size", "4", "--precision", "fp32",
                          "--savename", "m", *flags))
    return compiled


@pytest.mark.slow
@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "conditional"])
def test_compile_compiles_the_network_once_although_the_last_batch_of_an_epoch_is_short(
        monkeypatch, tmp_path, dataset_dir, style_files, conditional):
    """6 photos at batch 4: every epoch ends with a batch of 2, for which a network compiled for fixed shapes was
    compiled again. The short batch is padded to 4 (the padding's outputs cut off): as many compiles as a run
    whose batches are all full (8 photos), and the same batch size in all of them."""
    extra = ["--conditional"] if conditional else []
    style = style_files[:2] if conditional else style_files[:1]
    for i in range(2):
        write_noise_image(tmp_path / "eight" / f"extra{i}.jpg", 40, 44, seed=20 + i)
    for path in dataset_dir.rglob("*.*"):
        (tmp_path / "eight" / path.name).write_bytes(path.read_bytes())
    stylepath = ",".join(map(str, style))
    full = compiles_of_a_run(monkeypatch, tmp_path / "full", tmp_path / "eight", Path(stylepath), "--max-steps", "3",
                             *extra)
    ragged = compiles_of_a_run(monkeypatch, tmp_path / "ragged", dataset_dir, Path(stylepath), "--max-steps", "3",
                               *extra)
    assert full and len(ragged) == len(full), (full, ragged)
    assert set(ragged) == {4}, ragged


def test_padding_a_short_batch_leaves_the_real_images_outputs_and_gradients_as_they_were():
    from style_transfer.training import FullBatches
    from transformer_net import TransformerNet

    torch.manual_seed(0)
    model = TransformerNet()
    images = torch.rand(4, 3, 16, 16) * 255
    padded = FullBatches(model)
    padded(images)  # a full batch first: the size to pad to
    model(images[:2]).square().mean().backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    output = padded(images[:2])
    assert output.shape[0] == 2
    torch.testing.assert_close(output, model(images[:2]), rtol=1e-4, atol=1e-3)
    output.square().mean().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-3, atol=1e-6, msg=name)


@pytest.mark.slow
def test_a_compiled_run_resumed_at_an_epochs_short_last_batch_compiles_for_the_full_batch_only(
        monkeypatch, tmp_path, dataset_dir, style_files):
    """6 photos at batch 4, resumed after step 1: its first batch is the epoch's short one. Padded only up to the
    largest batch seen so far, that batch was compiled as it came, and the next full batch compiled again."""
    compiles_of_a_run(monkeypatch, tmp_path, dataset_dir, style_files[0], "--max-steps", "1",
                      "--checkpoint-interval", "1")
    resumed = compiles_of_a_run(monkeypatch, tmp_path, dataset_dir, style_files[0], "--max-steps", "3",
                                "--resume", str(tmp_path / "checkpoints/m_step0000001.pth"))
    assert resumed and set(resumed) == {4}, resumed
