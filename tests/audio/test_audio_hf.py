"""Pretrained Hugging Face encoders (``trident_audio.hf.PretrainedEncoder``): tiny random models saved with
``save_pretrained`` to a temporary folder (no hub), loaded, checked against transformers' own forward, fine-tuned
through the CLI, exported with parity and run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from trident_audio.cli import main
from trident_audio.hf import PretrainedEncoder, save_tiny_model
from trident_audio.module import SpeechModule
from trident_core.errors import ConfigError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("hf") / "tiny-wav2vec2")


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert", "wavlm", "data2vec-audio"])
def test_the_encoder_computes_what_transformers_computes(tmp_path: Path, model_type: str) -> None:
    """Our split (normalisation + conv front end, then projection + transformer) on a zero-padded batch equals the
    feature extractor's padding and normalisation followed by the model's own forward with its attention mask."""
    from transformers import AutoFeatureExtractor, AutoModel

    folder = save_tiny_model(tmp_path / model_type, model_type=model_type)
    net = PretrainedEncoder(str(folder)).eval()
    reference = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    extractor = AutoFeatureExtractor.from_pretrained(folder)
    rng = np.random.default_rng(0)
    waves = [0.1 * rng.standard_normal(16000, dtype=np.float32) + 0.05,
             0.3 * rng.standard_normal(11000, dtype=np.float32)]
    inputs = extractor(waves, sampling_rate=16000, padding=True, return_tensors="pt", return_attention_mask=True)
    batch = torch.zeros(2, 16000)
    batch[0], batch[1, :11000] = torch.from_numpy(waves[0]), torch.from_numpy(waves[1])
    with torch.no_grad():
        want = reference(inputs.input_values, attention_mask=inputs.attention_mask).last_hidden_state
        got, frames = net(batch, torch.tensor([16000, 11000]))
    assert frames.tolist() == [200, 137]  # 80 samples per frame in the tiny model (strides 5*4*4)
    for row, n in enumerate(frames.tolist()):
        assert torch.allclose(got[row, :n], want[row, :n], atol=1e-4), (got[row, :n] - want[row, :n]).abs().max()


def test_missing_folder_and_missing_preprocessor_config(tmp_path: Path, tiny: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError, match=f"model.net.init_args.path: {missing} is not a folder"):
        PretrainedEncoder(str(missing))
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text((tiny / "config.json").read_text())
    with pytest.raises(ConfigError, match=r"partial has no preprocessor_config.json; write it with Wav2Vec2Feature"):
        PretrainedEncoder(str(partial))


def test_the_cli_names_the_missing_folder_and_a_sample_rate_mismatch(
    tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["fit", "--config", "debug", "--config", "hf_ctc", "--trainer.default_root_dir", str(tmp_path / "run"),
            "--data.data_dir", str(tmp_path / "data")]
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--model.net.init_args.path", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert f"error: model.net.init_args.path: {tmp_path / 'nowhere'} is not a folder" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exit_info:  # data.sample_rate is linked to the net's sample_rate
        main([*base, "--model.net.init_args.path", str(tiny), "--data.sample_rate", "8000"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: {tiny / 'preprocessor_config.json'}: the pretrained encoder takes 16000 Hz audio" in err
    assert "data.sample_rate is 8000" in err and "--data.sample_rate 16000" in err
    assert not (tmp_path / "data").exists()  # refused before any corpus is synthesised


def test_fine_tuning_groups_head_and_layer_wise_encoder_rates(tiny: Path) -> None:
    module = SpeechModule(PretrainedEncoder(str(tiny)), lm_order=0, spec_augment=False, encoder_lr=1e-4,
                          layer_decay=0.5)
    optimizer = torch.optim.AdamW(module.param_groups(), lr=1e-3)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    params = dict(module.named_parameters())
    assert lr_of[id(params["head.weight"])] == 1e-3  # the new CTC head, sized to the tokenizer
    assert params["head.weight"].shape[0] == module.tokenizer.vocab_size
    assert lr_of[id(params["net.model.encoder.layers.1.feed_forward.output_dense.weight"])] == 1e-4  # top layer
    assert lr_of[id(params["net.model.encoder.layers.0.feed_forward.output_dense.weight"])] == 5e-5
    assert lr_of[id(params["net.model.feature_projection.projection.weight"])] == 2.5e-5  # below layer 0
    assert lr_of[id(params["net.model.encoder.layer_norm.weight"])] == 1e-4  # stable layer norm: after the top
    frozen = [n for n, p in params.items() if n.startswith("net.features.")]
    assert frozen and all(id(params[n]) not in lr_of for n in frozen)  # frozen feature encoder: not optimised
    assert len(lr_of) == sum(p.requires_grad for p in module.parameters())

    unfrozen = SpeechModule(PretrainedEncoder(str(tiny), freeze_feature_encoder=False), lm_order=0)
    assert len(unfrozen.param_groups()) == 1  # no encoder_lr: one group, everything trains
    assert all(p.requires_grad for p in unfrozen.parameters())
    with pytest.raises(ConfigError, match="model.layer_decay must be in"):
        SpeechModule(PretrainedEncoder(str(tiny)), layer_decay=0.0)


@pytest.mark.slow  # a fit, two exports (dynamo ONNX of a transformer) and inference: about a minute on 2 cores
def test_fit_export_infer_a_pretrained_encoder_through_the_cli(
    tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    main(["fit", "--config", "debug", "--config", "hf_ctc", "--model.net.init_args.path", str(tiny),
          "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(run), "--data.data_dir",
          str(tmp_path / "data")])
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    net = ckpt["hyper_parameters"]["net"]
    assert net["class_path"] == "trident_audio.hf.PretrainedEncoder" and net["init_args"]["path"] == str(tiny)
    weights, pretrained = ckpt["state_dict"], load_file(tiny / "model.safetensors")
    conv = "feature_extractor.conv_layers.0.conv.weight"
    assert torch.equal(weights["net.features.conv.conv_layers.0.conv.weight"], pretrained[f"wav2vec2.{conv}"])
    layer = "encoder.layers.1.feed_forward.output_dense.weight"  # the transformer is fine-tuned
    assert not torch.equal(weights[f"net.model.{layer}"], pretrained[f"wav2vec2.{layer}"])

    capsys.readouterr()
    main(["export", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--output", str(tmp_path / "artifact")])
    report = json.loads(capsys.readouterr().out)
    assert report["parity"]["onnx"]["passed"] and report["parity"]["onnx"]["max_abs_diff"] < 1e-4
    meta = json.loads((tmp_path / "artifact" / "metadata.json").read_text())["domain_metadata"]
    assert meta["features"] == {"kind": "WaveformFrontEnd", "sample_rate": 16000, "hop_length": 80}

    main(["infer", "--artifact", str(tmp_path / "artifact"), "--input", str(tmp_path / "data" / "test.jsonl")])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(rows) == 2 and all(isinstance(r["pred_text"], str) and "text" in r for r in rows)
