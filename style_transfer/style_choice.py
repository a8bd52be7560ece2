"""Choosing the style of a conditional model when rendering: the flags --style, --style-mix, --list-styles and
(render_video.py) --style-schedule, their parsing and checks, and setting the model's mix from them.

A mix is one weight per style of the model, non-negative and normalised to sum 1; the network then uses the
weighted sum of the styles' scales and shifts (conditional_net.py). A plain model has one style: it takes
--style 0 or a one-weight mix, and refuses anything that needs more styles.
"""

import argparse
import bisect
import math
import sys
from dataclasses import dataclass

import torch

from style_transfer import model_files
from style_transfer.arbitrary_net import ArbitraryTransformerNet
from style_transfer.conditional_net import ConditionalTransformerNet
from transformer_net import TransformerNet
from utils import UserError, parse_weights


def add_style_args(parser: argparse.ArgumentParser, schedule: bool = False) -> None:
    """The style flags of render_image.py, and with `schedule` those of render_video.py."""
    group = parser.add_argument_group("style choice (conditional models, train.py --conditional)")
    group.add_argument("--style", default=None, metavar="I|NAME",
                       help="render this style of the model: its name or its number from 0 (default: the first)")
    group.add_argument("--style-mix", default=None, metavar="W1,W2,...",
                       help="render a mix of the model's styles: one non-negative weight per style, normalised "
                            "to sum 1 (default: the first style alone)")
    if schedule:
        group.add_argument("--style-schedule", default=None, metavar="T:MIX;T:MIX;...",
                           help="morph between mixes over the clip: at T seconds the mix MIX (weights W1,W2,... or "
                                "one style's name or number), linearly in between, held before the first and after "
                                "the last time, e.g. '0:1,0;4:0,1' (default: no schedule)")
    group.add_argument("--list-styles", action="store_true",
                       help="print the model's styles and exit; needs only the model flag (default: off)")


def list_styles_if_asked(argv: list[str] | None) -> bool:
    """Print the styles of the model named in `argv` if it asks for --list-styles; True if it did."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--model-path", "--model", dest="model", default=None)
    parser.add_argument("--list-styles", action="store_true")
    known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else [str(a) for a in argv])
    if not known.list_styles:
        return False
    if known.model is None:
        raise UserError("--list-styles: name the model with --model-path")
    model = model_files.load_transformer(known.model, arbitrary=True)
    if isinstance(model, ArbitraryTransformerNet):
        print(f"{known.model}: an arbitrary-style model: any picture is a style (--style-image PATH[,PATH...])")
        return True
    if not isinstance(model, ConditionalTransformerNet):
        print(f"{known.model}: a plain model with one style (mixing at render time needs a model of "
              "train.py --conditional or distillation.py --conditional)")
        return True
    print(f"{known.model}: a conditional model with {model.style_count} styles (--style I|NAME, "
          "--style-mix W1,W2,...)")
    for index, name in enumerate(model.style_names):
        print(f"  {index}  {name}")
    return True


def style_names(model: TransformerNet) -> list[str]:
    return model.style_names if isinstance(model, ConditionalTransformerNet) else ["the model's only style"]


def _describe(model: TransformerNet, model_path: str) -> str:
    if not isinstance(model, ConditionalTransformerNet):
        return f"{model_path} is a plain model with one style"
    styles = ", ".join(f"{i} {n}" for i, n in enumerate(model.style_names))
    return f"{model_path} has {model.style_count} styles ({styles})"


def style_index(text: str, model: TransformerNet, model_path: str, flag: str = "--style") -> int:
    """The number of a style given by name, or by its number from 0 (a name wins)."""
    names = style_names(model)
    if text in names and isinstance(model, ConditionalTransformerNet):
        return names.index(text)
    if text.strip().isdigit() and int(text) < len(names):
        return int(text)
    raise UserError(f"{flag}: no style {text!r}: {_describe(model, model_path)}")


def parse_mix(text: str, model: TransformerNet, model_path: str, flag: str = "--style-mix") -> list[float]:
    """`W1,W2,...`: one weight per style of the model, normalised to sum 1."""
    count = len(style_names(model))
    given = len(text.split(","))
    if given != count:
        more = "" if isinstance(model, ConditionalTransformerNet) else (
            "; mixing styles at render time needs a model of train.py --conditional (or distillation.py "
            "--conditional)")
        raise UserError(f"{flag}: {given} weights given, but {_describe(model, model_path)}{more}")
    return parse_weights(text, count, flag)


def one_style(index: int, count: int) -> list[float]:
    return [1.0 if i == index else 0.0 for i in range(count)]


def chosen_mix(args: argparse.Namespace, model: TransformerNet, model_path: str) -> list[float]:
    """The mix --style or --style-mix asks for (default: the first style)."""
    if args.style is not None and args.style_mix is not None:
        raise UserError("give either --style or --style-mix, not both")
    count = len(style_names(model))
    if args.style_mix is not None:
        return parse_mix(args.style_mix, model, model_path)
    return one_style(style_index(args.style, model, model_path) if args.style is not None else 0, count)


def apply_style_choice(model: TransformerNet, args: argparse.Namespace, model_path: str) -> "StyleSchedule | None":
    """Check the style flags against the model and set its mix (once: the network then runs at a plain model's
    speed). Returns the --style-schedule to follow per frame, if one is given."""
    text = getattr(args, "style_schedule", None)
    schedule = None
    if text is not None:
        if args.style is not None or args.style_mix is not None:
            raise UserError("give either --style-schedule or --style / --style-mix, not both")
        if not isinstance(model, ConditionalTransformerNet):
            raise UserError(f"--style-schedule: {_describe(model, model_path)}; morphing between styles needs a "
                            "model of train.py --conditional (or distillation.py --conditional)")
        schedule = parse_schedule(text, model, model_path)
    mix = schedule.mixes([0.0])[0] if schedule else chosen_mix(args, model, model_path)
    if isinstance(model, ConditionalTransformerNet):
        model.set_style_mix(mix)
    return schedule


@dataclass
class StyleSchedule:
    """Keyframed mixes: `times` in seconds, increasing; `mixes` one normalised mix each."""

    times: list[float]
    key_mixes: list[list[float]]

    def mixes(self, seconds: list[float]) -> torch.Tensor:
        """The mix at each of these times: linear between keyframes, held outside them (one row per time)."""
        keys = torch.tensor(self.key_mixes)
        rows = []
        for t in seconds:
            after = bisect.bisect_right(self.times, t)
            if after == 0:
                rows.append(keys[0])
            elif after == len(self.times):
                rows.append(keys[-1])
            else:
                start, end = self.times[after - 1], self.times[after]
                rows.append(torch.lerp(keys[after - 1], keys[after], (t - start) / (end - start)))
        return torch.stack(rows)


def parse_schedule(text: str, model: TransformerNet, model_path: str) -> StyleSchedule:
    """`T:MIX;T:MIX;...` with T in seconds (increasing) and MIX weights `W1,W2,...` or a style's name or number."""
    flag = "--style-schedule"
    times, mixes = [], []
    for entry in (e.strip() for e in text.split(";")):
        if not entry:
            continue
        time_text, colon, mix_text = entry.partition(":")
        try:
            time = float(time_text)
        except ValueError:
            time = math.nan
        if not colon or not math.isfinite(time) or time < 0:
            raise UserError(f"{flag}: {entry!r} is not TIME:MIX with TIME in seconds >= 0 (e.g. '0:1,0;4:0,1')")
        if times and time <= times[-1]:
            raise UserError(f"{flag}: the times must increase ({time:g} s comes after {times[-1]:g} s)")
        if "," in mix_text:
            mix = parse_mix(mix_text, model, model_path, f"{flag} at {time:g} s")
        else:
            mix = one_style(style_index(mix_text.strip(), model, model_path, f"{flag} at {time:g} s"),
                            len(style_names(model)))
        times.append(time)
        mixes.append(mix)
    if not times:
        raise UserError(f"{flag}: no TIME:MIX in {text!r} (e.g. '0:1,0;4:0,1')")
    return StyleSchedule(times, mixes)
