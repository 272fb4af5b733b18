"""``SpeechModule``: CTC training of an encoder, WER/CER, greedy or beam-search decoding, per-voice WER table."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.text import CharErrorRate, WordErrorRate

from trident_audio.arpa import lm_from_dict, read_arpa
from trident_audio.decoding import WordNgramLM
from trident_audio.export import decode_ctc, export_spec, front_end
from trident_audio.infer_options import check_decoder
from trident_audio.text import tokenizer_from_dict
from trident_audio.textlm import MAX_ORDER, read_lm_text
from trident_audio.transforms import SpecAugment
from trident_core.errors import ConfigError
from trident_core.export import ExportSpec
from trident_core.module import TaskModule

if TYPE_CHECKING:
    from trident_audio.arpa import ArpaLM
    from trident_audio.model import ConformerEncoder

log = logging.getLogger(__name__)


def word_errors(reference: str, hypothesis: str) -> int:
    """Word-level Levenshtein distance."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


class SpeechModule(TaskModule):
    """Trains an encoder (``ConformerEncoder`` or a pretrained ``PretrainedEncoder``) with a linear CTC head on
    characters or BPE pieces.

    Args:
        net: Encoder with ``features(waveform, lengths)``, ``encode(features, lengths)``, ``output_dim`` and
            ``sample_rate`` (see :class:`trident_audio.model.ConformerEncoder` and
            :class:`trident_audio.hf.PretrainedEncoder`); the CLI links ``data.sample_rate`` to its ``sample_rate``,
            and a batch at another rate is a ConfigError.
        tokenizer: Tokenizer dict (linked from ``data.tokenizer_config``); ``None`` is the character default.
        lm_texts: Normalised training transcripts the word LM is trained on (linked from ``data.train_texts``;
            not a hyperparameter: the LM itself travels in checkpoints and artifacts).
        decoder: ``"greedy"``, ``"beam"`` or ``"flashlight"`` (torchaudio's ``ctc_decoder``, the ``flashlight`` extra,
            with an ARPA LM) for test and inference (validation always decodes greedily).
        beam_size: Beam width of the prefix beam search.
        lm_order: Order of the word n-gram LM trained on ``lm_texts`` (0 disables it).
        lm_path: An ARPA n-gram LM file to use instead of the one trained on ``lm_texts``; read when fitting
            starts, then kept in the checkpoint (test, export and resumes do not need the file).
        lm_text: A text corpus (one sentence per line) to build an interpolated Kneser-Ney ``lm_order``-gram LM
            from (:mod:`trident_audio.textlm`, orders 1-6), read and kept like ``lm_path``; exclusive with it.
        lm_weight: LM weight in beam search.
        word_bonus: Score added per word in beam search with an LM.
        spec_augment: Apply SpecAugment while training.
        freq_masks: SpecAugment frequency masks.
        freq_width: Largest frequency mask (mel bands).
        time_masks: SpecAugment time masks.
        time_width: Largest time mask (fraction of the utterance).
        chunk_seconds: Inference splits longer audio into chunks of at most this many seconds.
        chunk_overlap: Seconds each chunk overlaps the next; their frames are joined at a quiet point inside the
            overlap (:func:`trident_audio.chunks.plan_chunks`). At most half of ``chunk_seconds``.
        encoder_lr: Learning rate of the net (its top layer when the net has ``layer_depths()``); the head keeps the
            optimizer's ``lr``. ``None``: one learning rate for everything.
        layer_decay: With ``encoder_lr``, the learning rate is multiplied by this once per layer below the top
            (layer-wise decay; 1.0: none).
        optimizer: Optimizer callable (default AdamW).
        scheduler: Scheduler callable (default warmup + cosine).
        warmup_ratio: Warmup fraction of the default scheduler.
        lr: Base learning rate over the optimizer's (see :class:`~trident_core.module.TaskModule`).
        compile: ``torch.compile`` the network (``true`` or a dict of options; see ``TaskModule``).
    """

    net: ConformerEncoder  # for the type checker: any net with its features/encode/output_dim/sample_rate

    def __init__(
        self,
        net: nn.Module,
        tokenizer: dict[str, Any] | None = None,
        lm_texts: list[str] | None = None,
        decoder: str = "greedy",
        beam_size: int = 8,
        lm_order: int = 2,
        lm_path: str | None = None,
        lm_text: str | None = None,
        lm_weight: float = 0.5,
        word_bonus: float = 1.0,
        spec_augment: bool = True,
        freq_masks: int = 2,
        freq_width: int = 15,
        time_masks: int = 2,
        time_width: float = 0.05,
        chunk_seconds: float = 20.0,
        chunk_overlap: float = 2.0,
        encoder_lr: float | None = None,
        layer_decay: float = 1.0,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        warmup_ratio: float = 0.06,
        lr: float | None = None,
        compile: bool | dict[str, Any] = False,
    ) -> None:
        super().__init__(net, optimizer=optimizer, scheduler=scheduler, warmup_ratio=warmup_ratio, lr=lr,
                         compile=compile)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "lm_texts"])
        self.decoder = check_decoder(decoder)
        if lm_path and lm_text:
            raise ConfigError("model.lm_path and model.lm_text are exclusive: pass an ARPA file or a text corpus to "
                              "build the LM from, not both")
        if lm_text and not 1 <= lm_order <= MAX_ORDER:
            raise ConfigError(f"model.lm_order must be 1..{MAX_ORDER} with model.lm_text, got {lm_order}")
        if not lm_text and lm_order not in (0, 1, 2, 3):
            raise ConfigError(f"model.lm_order must be 0 (no LM), 1, 2 or 3, got {lm_order}")
        for attr in ("features", "encode", "output_dim", "sample_rate"):
            if not hasattr(net, attr):
                raise ConfigError(f"model.net must provide {attr!r} (use trident_audio.model.ConformerEncoder or "
                                  "trident_audio.hf.PretrainedEncoder)")
        if encoder_lr is not None and not encoder_lr > 0:
            raise ConfigError(f"model.encoder_lr must be > 0 (or null for one learning rate), got {encoder_lr}")
        if not 0 < layer_decay <= 1:
            raise ConfigError(f"model.layer_decay must be in (0, 1], got {layer_decay}")
        front_end(self.net)  # a front end built for another rate than the net declares is a ConfigError
        self.tokenizer = tokenizer_from_dict(tokenizer)
        self.head = nn.Linear(self.net.output_dim, self.tokenizer.vocab_size)
        self.spec_augment = SpecAugment(freq_masks, freq_width, time_masks, time_width) if spec_augment else None
        self.beam_size = beam_size
        self.lm_order = lm_order
        self.lm_weight = lm_weight
        self.word_bonus = word_bonus
        if not 0 <= chunk_overlap <= chunk_seconds / 2:
            raise ConfigError(f"model.chunk_overlap must be between 0 and half of model.chunk_seconds "
                              f"({chunk_seconds / 2:g}), got {chunk_overlap}")
        self.chunk_seconds = chunk_seconds
        self.chunk_overlap = chunk_overlap
        self.encoder_lr = encoder_lr
        self.layer_decay = layer_decay
        self.lm_path = lm_path
        self.lm_text = lm_text
        self.lm: WordNgramLM | ArpaLM | None = None
        if lm_texts and lm_order and not lm_path and not lm_text:
            self.lm = WordNgramLM.train(lm_texts, order=lm_order)
        if self.lm is not None:
            log.info("word %d-gram LM trained on %d words", lm_order, self.lm.vocabulary_size)
        self.set_metrics(MetricCollection({"wer": WordErrorRate(), "cer": CharErrorRate()}))
        self._voice_errors: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Waveforms ``(batch, samples)`` to CTC log-probabilities ``(batch, frames, vocab)`` and frame counts."""
        x, out_lengths = self.net(waveform, lengths)
        return self.head(x).log_softmax(-1), out_lengths

    def _log_probs(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        rate = batch.get("sample_rate")
        if rate is not None and rate != self.net.sample_rate:
            raise ConfigError(
                f"the batch's audio is at {rate} Hz (data.sample_rate) but the net's features are built for "
                f"{self.net.sample_rate} Hz (model.net.init_args.sample_rate). The CLI links the two; in Python, "
                f"build the net with sample_rate={rate} or the data module with sample_rate={self.net.sample_rate}"
            )
        with torch.autocast(device_type=self.device.type, enabled=False):  # features stay in float32
            feats, frames = self.net.features(batch["waveform"].float(), batch["lengths"])
        if self.spec_augment is not None and self.training:
            feats = self.spec_augment(feats)
        x, out_lengths = self.net.encode(feats, frames)
        return self.head(x).float().log_softmax(-1), out_lengths

    def _ctc_loss(self, log_probs: Tensor, out_lengths: Tensor, batch: dict[str, Any]) -> Tensor:
        return nn.functional.ctc_loss(
            log_probs.transpose(0, 1), batch["targets"], out_lengths, batch["target_lengths"],
            blank=self.tokenizer.blank, zero_infinity=True,
        )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        log_probs, out_lengths = self._log_probs(batch)
        loss = self._ctc_loss(log_probs, out_lengths, batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["text"]))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        log_probs, out_lengths = self._log_probs(batch)
        loss = self._ctc_loss(log_probs, out_lengths, batch)
        hyps = self.transcribe(log_probs, out_lengths, decoder="greedy")
        assert self.val_metrics is not None
        self.val_metrics.update(hyps, batch["text"])
        size = len(batch["text"])
        self.log("val/loss", loss, prog_bar=True, batch_size=size, sync_dist=True)
        self.log_dict(self.val_metrics, prog_bar=True, batch_size=size)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        log_probs, out_lengths = self._log_probs(batch)
        hyps = self.transcribe(log_probs, out_lengths)
        assert self.test_metrics is not None
        self.test_metrics.update(hyps, batch["text"])
        self.log_dict(self.test_metrics, batch_size=len(batch["text"]))
        for voice, ref, hyp in zip(batch["voice"], batch["text"], hyps, strict=True):
            stats = self._voice_errors[voice]
            stats[0] += word_errors(ref, hyp)
            stats[1] += len(ref.split())

    def transcribe(self, log_probs: Tensor, lengths: Tensor, decoder: str | None = None) -> list[str]:
        """Decode a batch of log-probabilities to normalised transcripts with :func:`~trident_audio.export.decode_ctc`
        (the rule artifact inference uses), with this module's decoder settings and LM."""
        scores = log_probs.detach().float().cpu().numpy()
        return [
            decode_ctc(row, self.tokenizer, length=length, decoder=decoder or self.decoder, beam_size=self.beam_size,
                       lm=self.lm, lm_weight=self.lm_weight, word_bonus=self.word_bonus)
            for row, length in zip(scores, lengths.tolist(), strict=True)
        ]

    def param_groups(self) -> list[dict[str, Any]]:
        """One group without ``encoder_lr``; with it, the head at the optimizer's ``lr`` and the net at ``encoder_lr``
        scaled by ``layer_decay`` per layer below the top (``net.layer_depths()``; a net without it is all top)."""
        if self.encoder_lr is None:
            return super().param_groups()
        layer_depths = getattr(self.net, "layer_depths", None)  # trident_audio.hf.PretrainedEncoder has it
        depths: dict[str, int] = layer_depths() if layer_depths is not None else {}
        top = max(depths.values(), default=0)
        groups: dict[float | None, dict[str, Any]] = {}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            lr = None  # the head: the optimizer's own lr
            if name.startswith("net."):
                lr = self.encoder_lr * self.layer_decay ** (top - depths.get(name.removeprefix("net."), top))
            group = groups.setdefault(lr, {"params": []} if lr is None else {"params": [], "lr": lr})
            group["params"].append(param)
        return list(groups.values())

    def compile_targets(self) -> list[nn.Module]:
        """The steps call ``net.features`` and ``net.encode``, not the net itself: for the Conformer, its
        subsampling and each conformer layer (the front end's STFT stays eager); for a pretrained HF encoder
        (:mod:`trident_audio.hf`), its convolutional front end and its transformer encoder."""
        net: Any = self.net  # a ConformerEncoder or a trident_audio.hf.PretrainedEncoder
        if hasattr(net, "subsampling") and hasattr(net, "conformer"):
            return [net.subsampling, *net.conformer.conformer_layers]
        if hasattr(net, "features") and hasattr(net, "model"):
            return [net.features, net.model.encoder]
        return super().compile_targets()

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.lm_path:
            self.lm = read_arpa(self.lm_path)
            log.info("ARPA %d-gram LM read from %s (%d words)", self.lm.order, self.lm_path, self.lm.vocabulary_size)
        elif self.lm_text:
            self.lm = read_lm_text(self.lm_text, self.tokenizer.normalizer, order=self.lm_order)
            log.info("Kneser-Ney %d-gram LM built from %s (%d words)", self.lm.order, self.lm_text,
                     self.lm.vocabulary_size)

    def on_test_start(self) -> None:
        self._voice_errors.clear()

    def on_test_epoch_end(self) -> None:
        stats = dict(self._voice_errors)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, stats)
            stats = {}
            for part in gathered:
                for voice, (errors, words) in part.items():
                    total = stats.setdefault(voice, [0, 0])
                    total[0] += errors
                    total[1] += words
        table = [{"voice": v, "words": w, "wer": e / max(w, 1)} for v, (e, w) in sorted(stats.items())]
        self.per_voice_wer = table
        if not self.trainer.is_global_zero or not table:
            return
        path = Path(self.trainer.default_root_dir) / "per_voice_wer.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(table, indent=2) + "\n")
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table("test/per_voice_wer", columns=["voice", "words", "wer"],
                                 data=[[r["voice"], r["words"], r["wer"]] for r in table])

    def checkpoint_extras(self) -> dict[str, Any]:
        """The word LM (plain data) beside the weights, so test, export and resume use the LM training built."""
        return {"lm": self.lm.to_dict() if self.lm is not None else None}

    def restore_checkpoint_extras(self, extras: dict[str, Any]) -> None:
        lm = extras.get("lm")
        self.lm = lm_from_dict(lm) if lm else None

    def export_spec(self) -> ExportSpec:
        """See :func:`trident_audio.export.export_spec`."""
        return export_spec(self)
