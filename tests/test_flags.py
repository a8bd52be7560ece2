"""Every script's command line takes flags only as written: no abbreviations (argparse's allow_abbrev)."""

import make_demo_clip
import make_demo_data
import make_figures
import make_style_images
import pytest

import benchmark
import cpu_paths
import distillation
import export
import render_image
import render_video
import sweep
import train
from conftest import assert_usage_error, run_main_in_process, train_args

SCRIPTS = [train, distillation, render_image, render_video, export, sweep, benchmark, cpu_paths, make_demo_clip,
           make_style_images]


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.__name__ for s in SCRIPTS])
def test_no_script_accepts_an_abbreviated_flag(script):
    assert script.build_parser().allow_abbrev is False


@pytest.mark.parametrize("script,abbreviation", [(make_figures, "--output-d"), (make_demo_data, "--out")],
                         ids=["make_figures", "make_demo_data"])
def test_the_tools_that_build_their_parser_in_main_refuse_abbreviations_too(tmp_path, capsys, script, abbreviation):
    result = run_main_in_process(capsys, script.main, abbreviation, tmp_path / "out")
    assert_usage_error(result, "unrecognized arguments", abbreviation)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("abbreviation", ["--style-weig", "--teacher-weight"])
def test_a_flag_one_letter_short_of_another_is_refused_not_guessed(tmp_path, dataset_dir, style_files, capsys,
                                                                   abbreviation):
    """--style-weights (the mix) and --style-weight (the loss scale) differ by one letter: a prefix of either must
    not be taken for one of them."""
    if abbreviation == "--style-weig":
        result = run_main_in_process(capsys, train.main, *train_args(dataset_dir, tmp_path, style_files[:2],
                                                                     abbreviation, "0.7,0.3", "--max-steps", "1"))
    else:
        result = run_main_in_process(capsys, distillation.main, "--datapath", dataset_dir, "--teachers", "a.pth,b.pth",
                                     abbreviation, "0.7,0.3")
    assert_usage_error(result, "unrecognized arguments", abbreviation)
    assert not (tmp_path / "models").exists()
