"""A model file is proven before it serves (issue #13, defect 2): sane metadata values, a version equal to its
content hash, no external data, and real sample photos scored through its whole pipeline. A refused reload
answers 422 and the old model keeps serving."""

import copy
import json
import math
from dataclasses import replace

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import numpy_helper

from api import model_slot
from api.app import create_app
from api.settings import Settings
from inference.align import NotRecognised
from inference.metadata import TEMPERATURE_RANGE, ModelFileError, Thresholds
from inference.onnx_wire import TENSOR_PATHS, WireError, content_version, external_tensors
from inference.predictor import Predictor
from training.stamp import stamp_metadata

from conftest import DEMO_MODEL, TINY_PHOTO_SETTINGS, image_bytes, model_folder


@pytest.fixture
def model_dir(classifier_model, tmp_path):
    """The classifier's model: it loads fastest, and the checks of its metadata are every recipe's. A reference
    model's own (its references) are test_reference.py's; the demo model is one, validated below."""
    return model_folder(classifier_model, tmp_path)


@pytest.fixture
def client(model_dir, classifier_predictor, tmp_path):
    settings = Settings(model_path=model_dir / "model.onnx", data_dir=tmp_path / "evidence", **TINY_PHOTO_SETTINGS)
    with TestClient(create_app(settings, classifier_predictor)) as client:  # open API on loopback: all are admin
        yield client


def restamped(model_dir, name, change) -> str:
    """A copy of model.onnx whose metadata `change` rewrote, stamped as export and calibrate stamp files:
    its version matches its content, only the values are wrong."""
    proto = onnx.load(str(model_dir / "model.onnx"))
    stamp_metadata(proto, change(Predictor(model_dir / "model.onnx").metadata))
    (model_dir / name).write_bytes(proto.SerializeToString())
    return name


def assert_refused_and_old_model_serves(client, name, problem):
    old = client.get("/v1/model").json()["version"]
    answer = client.post("/v1/admin/model", json={"path": name})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "invalid_model" and problem in answer.json()["error"]["message"]
    assert client.get("/v1/model").json()["version"] == old
    inspection = client.post("/v1/inspections", files={"image": ("a.jpg", image_bytes(size=(160, 120)), "image/jpeg")})
    assert inspection.status_code == 200 and inspection.json()["model"]["version"] == old
    return answer.json()["error"]["message"]


def _spec(**fields):
    """A metadata change to the preprocessing spec, written as a hand-edited file would have it: without
    PreprocessSpec's own checks (a NaN std never reaches a PreprocessSpec in a loaded model)."""
    def change(meta):
        spec = copy.copy(meta.preprocess)
        for name, value in fields.items():
            object.__setattr__(spec, name, value)
        return replace(meta, preprocess=spec)
    return change


BROKEN_VALUES = {
    "std-nan": (_spec(std=(math.nan, 0.224, 0.225)), "preprocess.std[0] is nan"),
    "mean-out-of-range": (_spec(mean=(0.485, 3.0, 0.406)), "preprocess.mean[1] is 3.0"),
    "temperature-inf": (lambda meta: replace(meta, temperature=math.inf), "temperature is inf"),
    "temperature-tiny": (lambda meta: replace(meta, temperature=1e-300), "temperature is 1e-300"),
    "thresholds-0-0": (lambda meta: replace(meta, thresholds=Thresholds(0.0, 0.0)), "called counterfeit"),
    "thresholds-1-1": (lambda meta: replace(meta, thresholds=Thresholds(1.0, 1.0)), "called genuine"),
    "huge-input": (_spec(width=5000), "preprocess.width is 5000"),
    # finite and positive, yet (pixel - mean) / std overflows float32: only running a photo through shows it
    "std-denormal": (_spec(std=(1e-45, 0.224, 0.225)), "preprocessing a sample photo gives non-finite values"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_VALUES))
def test_a_model_with_broken_values_is_refused_and_the_old_one_keeps_serving(client, model_dir, case):
    change, problem = BROKEN_VALUES[case]
    name = restamped(model_dir, f"{case}.onnx", change)
    assert_refused_and_old_model_serves(client, name, problem)
    with pytest.raises(ModelFileError, match="preprocess|temperature|thresholds"):
        model_slot.load_validated(model_dir / name)  # the same check at startup: `counterfeit serve` exits 2


def test_a_model_edited_by_hand_no_longer_matches_its_version(client, model_dir):
    proto = onnx.load(str(model_dir / "model.onnx"))
    props = {p.key: p for p in proto.metadata_props}
    props["thresholds"].value = json.dumps({"high": 0.9, "low": 0.1}, sort_keys=True)  # still claims the old version
    (model_dir / "edited.onnx").write_bytes(proto.SerializeToString())
    message = assert_refused_and_old_model_serves(client, "edited.onnx", "does not match its version")
    assert "re-export it" in message and "do not edit" in message


def test_a_model_with_external_data_is_refused_before_it_reads_the_working_folder(client, model_dir, tmp_path,
                                                                                 monkeypatch):
    working = tmp_path / "working"
    working.mkdir()
    monkeypatch.chdir(working)  # onnxruntime resolves the external file of a model loaded from bytes here
    proto = onnx.load(str(model_dir / "model.onnx"))
    tensor = proto.graph.initializer[0]
    (working / "weights.bin").write_bytes(numpy_helper.to_array(tensor).tobytes())
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="weights.bin")
    stamp_metadata(proto, Predictor(model_dir / "model.onnx").metadata)  # a proper version: only the data is wrong
    (model_dir / "external.onnx").write_bytes(proto.SerializeToString())
    assert_refused_and_old_model_serves(client, "external.onnx", "1 of its tensors keep their data in external files")


def test_the_shipped_and_exported_models_carry_their_content_version(model_path):
    for path in (DEMO_MODEL, model_path):
        assert content_version(path.read_bytes()) == Predictor(path).metadata.version


def test_validation_runs_the_sample_photos_and_a_model_of_other_products_still_runs_its_graph(tmp_path,
                                                                                            monkeypatch):
    demo = Predictor(DEMO_MODEL)  # a reference model: it registers photos to its products first
    for name in ("genuine", "counterfeit"):
        assert len(list(model_slot.SAMPLES_DIR.glob(f"{name}-*.jpg"))) >= 1
    for path in sorted(model_slot.SAMPLES_DIR.glob("*.jpg")):
        assert path.stat().st_size <= 60_000
        verdict = demo.predict([demo.load(path.read_bytes()).image])[0].verdict
        assert verdict == path.name.split("-")[0], path.name  # what samples/README.md says it answers
    model_slot.validate(demo)
    monkeypatch.setattr(model_slot, "SAMPLES_DIR", tmp_path)  # photos of no product the demo model knows
    (tmp_path / "texture.jpg").write_bytes(image_bytes(size=(640, 480)))
    with pytest.raises(NotRecognised):
        demo.prepare(demo.load((tmp_path / "texture.jpg").read_bytes()).image)
    model_slot.validate(demo)  # plainly resized instead, and scored


def test_the_temperature_bounds_are_the_calibrators_search_range():
    from inference.calibration import _TEMPERATURES

    assert TEMPERATURE_RANGE[0] <= _TEMPERATURES.min() and _TEMPERATURES.max() <= TEMPERATURE_RANGE[1]
    assert np.allclose([_TEMPERATURES.min(), _TEMPERATURES.max()], TEMPERATURE_RANGE)


def test_the_wire_walk_follows_every_place_a_tensor_can_sit():
    """TENSOR_PATHS against onnx's own schema: every field whose message can hold a TensorProto."""
    from onnx import onnx_ml_pb2

    holds_tensors = {"TensorProto"}
    messages = [getattr(onnx_ml_pb2, name).DESCRIPTOR for name in dir(onnx_ml_pb2) if name.endswith("Proto")]
    for _ in messages:  # to a fixed point: a message holds tensors if one of its fields' messages does
        holds_tensors |= {m.name for m in messages
                          if any(f.message_type and f.message_type.name in holds_tensors for f in m.fields)}
    expected = {m.name: {f.number: f.message_type.name for f in m.fields
                         if f.message_type and f.message_type.name in holds_tensors}
                for m in messages if m.name in holds_tensors - {"TensorProto"}}
    assert TENSOR_PATHS == expected
    fields = onnx_ml_pb2.TensorProto.DESCRIPTOR.fields_by_name
    assert (fields["external_data"].number, fields["data_location"].number) == (13, 14)


def test_a_truncated_file_is_refused_by_the_wire_walk(tmp_path):
    data = DEMO_MODEL.read_bytes()
    assert external_tensors(data) == 0
    with pytest.raises(WireError, match="truncated"):
        external_tensors(data[:5000])
    (tmp_path / "truncated.onnx").write_bytes(data[:5000])
    with pytest.raises(ModelFileError, match="not a loadable ONNX model"):
        Predictor(tmp_path / "truncated.onnx")


@pytest.mark.parametrize("std", [(float("nan"), 0.2, 0.2), (float("inf"), 0.2, 0.2), (0.2, 0.0, 0.2)])
def test_a_preprocessing_spec_with_a_std_that_is_not_a_positive_number_is_refused(std):
    from inference.preprocess import PreprocessSpec

    with pytest.raises(ValueError, match="finite"):
        PreprocessSpec(64, 64, std=std)


def memory_bomb(model_dir, name: str, side: int = 16000) -> str:
    """The classifier's file with a few nodes more: each photo expanded to side x side floats (1 GB at 16000)
    before its mean, times 0, is added to the logits. Small on disk; the scores are the same."""
    from onnx import TensorProto, helper

    proto = onnx.load(str(model_dir / "model.onnx"))
    graph = proto.graph
    producer = next(node for node in graph.node if "logits" in node.output)
    producer.output[list(producer.output).index("logits")] = "logits_raw"
    graph.initializer.extend([numpy_helper.from_array(np.array([1, 1, side, side], np.int64), "bomb_shape"),
                              numpy_helper.from_array(np.array([-1, 1], np.int64), "bomb_flat"),
                              numpy_helper.from_array(np.zeros((), np.float32), "bomb_zero")])
    graph.node.extend([
        helper.make_node("ReduceMean", ["image"], ["bomb_mean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Expand", ["bomb_mean", "bomb_shape"], ["bomb_big"]),
        helper.make_node("ReduceMean", ["bomb_big"], ["bomb_back"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["bomb_back", "bomb_flat"], ["bomb_column"]),
        helper.make_node("Mul", ["bomb_column", "bomb_zero"], ["bomb_nothing"]),
        helper.make_node("Add", ["logits_raw", "bomb_nothing"], ["logits"]),
    ])
    assert TensorProto.FLOAT  # the graph stays float32 throughout
    stamp_metadata(proto, Predictor(model_dir / "model.onnx").metadata)
    (model_dir / name).write_bytes(proto.SerializeToString())
    return name


def test_a_model_that_needs_gigabytes_to_prove_is_refused_in_a_bounded_child(client, model_dir):
    """Issue 24: proving such a 1.5 KB graph took the server from 0.72 to 3.1 GB, kept after the demo came back."""
    import resource

    name = memory_bomb(model_dir, "bomb.onnx")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # MB, this process's peak so far
    message = assert_refused_and_old_model_serves(client, name, "proved with at most 2048 MB of memory")
    assert "failed on the sample photos" in message or "more than 2048 MB" in message
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 - before < 300  # the child paid, not us


def test_a_model_within_the_bound_is_proved_in_the_child_and_served(client, model_dir):
    name = memory_bomb(model_dir, "harmless.onnx", side=64)  # the same nodes, 16 KB a photo
    answer = client.post("/v1/admin/model", json={"path": name})
    assert answer.status_code == 200, answer.text
    assert client.get("/v1/model").json()["version"] == Predictor(model_dir / name).metadata.version
