"""Out of memory: the error names the stage, the batch size and the input shapes, and says what to change."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from toydomain import DOMAIN, main
from trident_core.cli import run_domain
from trident_core.errors import ResourceError


def _args(tmp_path: Path, max_elements: int) -> list[str]:
    # the simulated limit: a batch above max_elements raises torch.OutOfMemoryError, as CUDA's allocator would
    return ["fit", "--config", "debug", "--trainer.default_root_dir", str(tmp_path / "run"),
            "--data.data_dir", str(tmp_path / "data"), "--trainer.enable_progress_bar", "false",
            "--export_on_fit_end.enabled", "false",
            "--trainer.callbacks+=faults.MemoryLimit", f"--trainer.callbacks.max_elements={max_elements}"]


def test_out_of_memory_names_batch_input_and_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*_args(tmp_path, 100), "--data.batch_size", "32"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory in the train step, batch 0 (global step 0")
    assert "batch size 32" in err and "[32, 8] float32" in err
    assert "lower data.batch_size (e.g. 16)" in err and "accumulate_grad_batches (to 2)" in err
    assert "Traceback" not in err
    # nothing trained at step 0, so no on_exception.ckpt (ProgressOnException) and the fixed run can reuse the folder
    assert not list((tmp_path / "run").glob("checkpoints/*.ckpt"))
    main([*_args(tmp_path, 10**6), "--data.batch_size", "32"])
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_library_callers_get_a_resource_error_with_the_original_cause(tmp_path: Path) -> None:
    with pytest.raises(ResourceError, match="batch size 16") as err:
        run_domain(DOMAIN, _args(tmp_path, 100), exit_on_error=False)
    assert isinstance(err.value.__cause__, torch.OutOfMemoryError)


def test_a_batch_that_fits_trains_normally(tmp_path: Path) -> None:
    cli = run_domain(DOMAIN, [*_args(tmp_path, 16 * 8), "--trainer.max_epochs", "1"])
    assert cli is not None and cli.trainer.global_step == 16


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_real_cuda_out_of_memory_is_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On a GPU, a real allocation failure: a 2^17-wide hidden layer on a batch of 2^16 (~32 GiB per activation)."""
    with pytest.raises(SystemExit):
        main(["fit", "--config", "debug", "--trainer.default_root_dir", str(tmp_path / "run"),
              "--data.data_dir", str(tmp_path / "data"), "--trainer.accelerator", "gpu", "--trainer.devices", "1",
              "--data.batch_size", "65536", "--model.net.init_args.hidden", "131072"])
    err = capsys.readouterr().err
    assert "out of memory in the" in err and "lower data.batch_size" in err
