"""The recipe registry (training/recipes/) and the torch boundaries between modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from training import recipes
from training.recipes import Recipe, get_recipe, ignored_options, recipe_names, train_options

TRAINING = Path(__file__).resolve().parents[1] / "training"


def torch_modules_loaded_by(script: str, *args) -> list[str]:
    """Run `script` in a fresh interpreter; -> the torch and torchvision modules it loaded."""
    listing = "\nprint(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))"
    done = subprocess.run([sys.executable, "-c", "import sys\n" + script + listing, *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])


def test_the_registry_names_every_recipe_default_first():
    assert recipe_names() == ["reference", "comparator", "classifier"]
    with pytest.raises(ValueError, match=r"^Invalid recipe 'magic'\. Only reference, comparator, classifier are supported\.$"):
        get_recipe("magic")


def test_each_recipe_sets_its_config_defaults():
    from training.config import TrainConfig

    for name in recipe_names():
        assert TrainConfig(recipe=name).image_size == get_recipe(name).default_image_size


def test_every_option_is_a_config_field_and_a_train_flag(run_cli):
    from dataclasses import fields

    from training.config import TrainConfig

    known = {f.name for f in fields(TrainConfig)}
    owned = [field for name in recipe_names() for field in get_recipe(name).options]
    assert set(owned) <= known and {option.field for option in train_options()} <= known
    code, out, _ = run_cli("train", "--help")
    assert code == 0 and all(option.flag in out for option in train_options())
    assert all(name in out for name in recipe_names())


def test_options_of_another_recipe_are_named_as_ignored():
    assert ignored_options("reference", ["recipe", "epochs", "seed", "lr"]) == (["epochs", "lr"], ["classifier"])
    assert ignored_options("classifier", ["epochs", "lr", "image_size"]) == ([], [])


def test_a_registered_recipe_is_what_train_fits(monkeypatch, tmp_path):
    from training.config import TrainConfig
    from training.train import fit

    calls = []
    fake = get_recipe("classifier")._replace(name="fake", fit=lambda config, **kwargs: calls.append(kwargs) or "fitted")
    monkeypatch.setitem(recipes._RECIPES, "fake", fake)
    assert fit(TrainConfig(recipe="fake", out=str(tmp_path)), progress=False) == "fitted"
    assert calls == [{"progress": False, "resume": False}]
    with pytest.raises(ValueError, match="already"):
        recipes.register(fake)


def test_a_checkpoint_that_names_no_recipe_loads_as_a_classifier(classifier_run, tmp_path):
    import torch

    from training.checkpoint import load_checkpoint

    checkpoint = torch.load(classifier_run / "checkpoint.pt", weights_only=True)
    del checkpoint["config"]["recipe"]  # as written before the reference recipe existed
    torch.save(checkpoint, tmp_path / "old.pt")
    model, config, _ = load_checkpoint(tmp_path / "old.pt")
    assert config.recipe == "classifier" and not model.training


def test_the_registry_and_the_cli_parser_load_no_torch():
    script = "import training.recipes\nfrom counterfeit.cli import build_parser\nbuild_parser()"
    assert torch_modules_loaded_by(script) == []


def test_counterfeit_calibrate_runs_without_torch(classifier_model, synth_data, tmp_path):
    script = "from counterfeit.cli import main\nassert main(['calibrate', *sys.argv[1:]]) == 0"
    assert torch_modules_loaded_by(script, classifier_model, synth_data / "val", "--out", tmp_path / "new.onnx") == []
    assert (tmp_path / "new.onnx").is_file()


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_training_imports_no_cli_module():
    """training/ is a library: the CLI (counterfeit/) calls it, never the other way round; and the reference
    fit does not reach into `counterfeit calibrate`'s module."""
    for path in TRAINING.rglob("*.py"):
        assert not [m for m in imports_of(path) if m.split(".")[0] == "counterfeit"], path
    assert "training.calibrate" not in imports_of(TRAINING / "recipes" / "reference" / "fit.py")


def test_the_audit_report_depends_on_the_audit_not_back():
    datatools = TRAINING.parent / "datatools"
    assert "datatools.audit" in imports_of(datatools / "audit_report.py")
    assert "datatools.audit_report" not in imports_of(datatools / "audit.py")


def test_recipe_entries_are_complete():
    for name in recipe_names():
        recipe = get_recipe(name)
        assert isinstance(recipe, Recipe) and recipe.name == name and recipe.help
        assert all(callable(f) for f in (recipe.fit, recipe.empty_model, recipe.export_graph))


def test_the_reference_recipes_image_rule_is_the_one_its_model_checks():
    # The registry states the rule for the CLI and the config; the model checks it where the rule comes
    # from (8x8 feature cells of 2x2-pooled pixels). Both must name the same number.
    from training.recipes.reference.model import PIXEL_POOL, STRIDE

    assert recipes.get_recipe("reference").image_divisor == STRIDE * PIXEL_POOL


def test_the_comparator_recipes_image_rule_is_the_one_its_model_checks():
    from training.recipes.comparator.model import STRIDE

    assert recipes.get_recipe("comparator").image_divisor == STRIDE
