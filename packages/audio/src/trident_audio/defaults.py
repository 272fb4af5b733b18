"""The embedded default corpus: support-desk speech synthesised offline, with several voices, rates, pitches
and background noise, written as 16 kHz WAV files with NeMo manifests (``train/val/test.jsonl``).

Synthesis uses libespeak-ng from the ``espeakng-loader`` wheel through ctypes, so it needs nothing but
Python packages. Where Debian's ``flite`` is installed its voices (kal16, awb, rms, slt, much closer to real
speech) are added. Validation and test use sentences and a voice that training never sees.
"""

from __future__ import annotations

import ctypes
import json
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from trident_audio.text import TextNormalizer
from trident_audio.waveform import read_audio

CORPUS_VERSION = "2"
ESPEAK_TRAIN_VOICES = ("en-us", "en-us+m3", "en+f3", "en-029", "en-gb-x-rp+f2", "en+m7")
ESPEAK_HELDOUT_VOICES = ("en-gb-scotland+f4",)
FLITE_TRAIN_VOICES = ("kal16", "awb", "rms")
FLITE_HELDOUT_VOICES = ("slt",)

_NAMES = ("Anna", "Ben", "Carlos", "Diana", "Emma", "Farid", "Grace", "Hiro", "Ivan", "Julia", "Kevin", "Laura",
          "Mohammed", "Nina", "Oscar", "Priya", "Quentin", "Rosa", "Sam", "Tara", "Umar", "Vera", "Walter", "Yuki")
_ITEMS = ("laptop", "phone", "router", "printer", "headset", "monitor", "keyboard", "charger", "tablet", "camera",
          "speaker", "watch", "modem", "subscription", "account", "invoice", "password", "license", "ticket")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_CITIES = ("Boston", "Denver", "Chicago", "Seattle", "Austin", "Dallas", "Phoenix", "Atlanta", "Portland", "Miami")
_TEMPLATES = (
    "My {item} stopped working yesterday.",
    "I would like to return the {item} I bought on {month} {ordinal}.",
    "Can you check the status of order {number}?",
    "Hi, this is {name}, I am calling about my {item}.",
    "Please reset the password for my account.",
    "The {item} was delivered to {city} instead of my home.",
    "I was charged ${price} twice this month.",
    "Could you send the invoice to {name} by {day}?",
    "My ticket number is {number}, can you help me?",
    "The {item} makes a strange noise when I turn it on.",
    "I need to speak with {name} about my refund.",
    "We moved to {city} on {month} {ordinal}.",
    "Is the store in {city} open on {day}?",
    "I have been waiting for {small} days for a reply.",
    "Please cancel my {item} before {month} {ordinal}.",
    "The meeting with {name} is at {hour} o'clock on {day}.",
    "My {item} shows an error code {small}.",
    "Can I upgrade my {item} for ${price}?",
    "{name} said the {item} would arrive on {day}.",
    "I'd like to book a repair for my {item} in {city}.",
    "Thank you {name}, that solved my problem.",
    "The weather in {city} is lovely today.",
    "I will call you back on {day} morning.",
    "There are {small} items missing from my order.",
    "My phone number ends in {digits}.",
    "Could you repeat that please?",
    "It is {hour} {minute} in {city} right now.",
    "{name} and {name2} share the same {item}.",
    "Do you ship to {city} before {month}?",
    "The total came to ${price} including tax.",
)


def corpus_sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct written sentences from the templates (digits, dates, prices as people write them)."""
    rng = random.Random(seed)
    out: dict[str, None] = {}
    for _ in range(count * 50):
        if len(out) >= count:
            break
        template = rng.choice(_TEMPLATES)
        name, name2 = rng.sample(_NAMES, 2)
        sentence = template.format(
            item=rng.choice(_ITEMS), month=rng.choice(_MONTHS), ordinal=_ordinal(rng),
            number=rng.randint(1000, 99999), name=name, name2=name2, city=rng.choice(_CITIES),
            price=f"{rng.randint(5, 500)}.{rng.choice(['00', '50', '99', '25'])}", day=rng.choice(_DAYS),
            small=rng.randint(2, 19), hour=rng.randint(1, 12), minute=rng.randint(10, 59),
            digits=rng.randint(1000, 9999),
        )
        out[sentence] = None
    return list(out)


def _ordinal(rng: random.Random) -> str:
    day = rng.randint(1, 28)
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


class EspeakVoice:
    """libespeak-ng (from the espeakng-loader wheel) through ctypes, synthesising into memory."""

    _RATE, _PITCH = 1, 3

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = self.lib.espeak_Initialize(2, 0, data, 0)  # AUDIO_OUTPUT_SYNCHRONOUS
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.sample_rate})")
        self._chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

        def collect(wav: ctypes._Pointer, count: int, _events: int) -> int:  # type: ignore[type-arg]
            if count > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
            return 0

        self._callback = callback_type(collect)  # keep a reference: espeak calls it later
        self.lib.espeak_SetSynthCallback(self._callback)

    def synth(self, text: str, voice: str, rate: int, pitch: int) -> tuple[np.ndarray, int]:
        # an unknown name returns non-zero and silently keeps the previous voice: check it
        status = self.lib.espeak_SetVoiceByName(voice.encode())
        if status != 0:
            raise RuntimeError(f"espeak-ng has no voice {voice!r} (espeak_SetVoiceByName returned {status})")
        self.lib.espeak_SetParameter(self._RATE, rate, 0)
        self.lib.espeak_SetParameter(self._PITCH, pitch, 0)
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        status = self.lib.espeak_Synth(data, len(data), 0, 0, 0, 1, None, None)  # espeakCHARS_UTF8
        self.lib.espeak_Synchronize()
        if status != 0 or not self._chunks:
            raise RuntimeError(f"espeak_Synth failed for {text!r} ({status})")
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0, self.sample_rate


def _flite_synth(text: str, voice: str, rate: int, pitch: int, sample_rate: int) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "x.wav"
        stretch = f"{170 / rate:.2f}"
        subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}", "--setf",
                        f"int_f0_target_mean={pitch * 2 + 40}", "-t", text, "-o", str(out)], check=True,
                       capture_output=True, timeout=60)
        return read_audio(out, sample_rate), sample_rate


def available_voices() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(engine, voice)`` pairs for training and held-out (validation/test only) voices."""
    train = [("espeak", v) for v in ESPEAK_TRAIN_VOICES]
    heldout = [("espeak", v) for v in ESPEAK_HELDOUT_VOICES]
    if shutil.which("flite"):
        train += [("flite", v) for v in FLITE_TRAIN_VOICES]
        heldout += [("flite", v) for v in FLITE_HELDOUT_VOICES]
    return train, heldout


def _fft_resample(wave: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling by spectrum truncation: ~50x faster than a sinc kernel for 22.05 -> 16 kHz,
    and exact enough for synthetic speech that starts and ends in silence."""
    if orig_rate == new_rate:
        return wave
    n_out = round(len(wave) * new_rate / orig_rate)
    spectrum = np.fft.rfft(wave)[: n_out // 2 + 1]
    return (np.fft.irfft(spectrum, n_out) * (n_out / len(wave))).astype(np.float32)


def _add_noise(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise augmentation: white or brown noise at 10-40 dB SNR, and a random gain."""
    power = float(np.mean(wave**2)) + 1e-10
    snr_db = rng.uniform(10, 40)
    noise = rng.standard_normal(len(wave)).astype(np.float32)
    if rng.random() < 0.5:
        noise = np.cumsum(noise)
        window = np.cumsum(np.concatenate([[0.0], noise]))
        local_mean = (window[400:] - window[:-400]) / 400  # brown noise minus its drift (moving average)
        noise = (noise[: len(local_mean)] - local_mean).astype(np.float32)
        noise = np.pad(noise, (0, len(wave) - len(noise)))
    noise *= np.sqrt(power / (np.mean(noise**2) + 1e-10) / 10 ** (snr_db / 10))
    out = (wave + noise) * rng.uniform(0.3, 1.0)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def _write_corpus(folder: Path, sentences: int, seed: int, sample_rate: int,
                  progress: Callable[[int, int], None] | None = None) -> None:
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    normalizer = TextNormalizer()
    written = corpus_sentences(sentences, seed)
    n_eval = max(2, len(written) // 10)
    splits = {"val": written[:n_eval], "test": written[n_eval : 2 * n_eval], "train": written[2 * n_eval :]}
    train_voices, heldout = available_voices()
    espeak = EspeakVoice()
    jobs: list[tuple[str, str, tuple[str, str]]] = []
    for split, texts in splits.items():
        for i, text in enumerate(texts):
            if split == "train":
                voice = rng.choice(train_voices)
            else:  # every third evaluation utterance is spoken by a voice training never hears
                voice = heldout[(i // 3) % len(heldout)] if i % 3 == 0 else train_voices[i % len(train_voices)]
            jobs.append((split, text, voice))
    manifests: dict[str, list[str]] = {s: [] for s in splits}
    for index, (split, text, (engine, speaker)) in enumerate(jobs):
        spoken = normalizer(text)  # speak exactly the words of the normalised transcript
        rate, pitch = rng.randint(140, 210), rng.randint(30, 70)
        if engine == "espeak":
            wave, rate_hz = espeak.synth(spoken, speaker, rate, pitch)
            wave = _fft_resample(wave, rate_hz, sample_rate)
        else:
            wave, _ = _flite_synth(spoken, speaker, rate, pitch, sample_rate)
        wave = _add_noise(wave, nrng)
        name = f"{split}/{split}_{index:05d}.wav"
        (folder / split).mkdir(exist_ok=True)
        sf.write(folder / name, wave, sample_rate, subtype="PCM_16")
        record = {"audio_filepath": name, "duration": round(len(wave) / sample_rate, 3), "text": text,
                  "voice": f"{engine}:{speaker}"}
        manifests[split].append(json.dumps(record))
        if progress:
            progress(index + 1, len(jobs))
    for split, lines in manifests.items():
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_corpus(data_dir: Path, sentences: int = 600, seed: int = 0, sample_rate: int = 16000) -> Path:
    """Synthesise the default corpus into ``data_dir`` once (atomic, safe from several processes)."""
    from rich.progress import Progress

    from trident_core.data import build_once

    def builder(tmp: Path) -> None:
        with Progress(transient=False) as bar:
            task = bar.add_task(f"Synthesising speech corpus into {data_dir}", total=None)

            def update(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            _write_corpus(tmp, sentences, seed, sample_rate, update)

    version = f"{CORPUS_VERSION}-{sentences}-{seed}-{sample_rate}-{shutil.which('flite') is not None}"
    return build_once(data_dir, builder, version=version)


def demo_inputs(data_dir: Path) -> str:
    """What ``trident demo`` transcribes: the test manifest of the built corpus."""
    return str(Path(data_dir) / "test.jsonl")


def speak(texts: list[str], folder: Path, sample_rate: int = 16000, seed: int = 0) -> str:
    """Spoken versions of ``texts`` (the pipeline row of ``trident demo``): each one synthesised with a held-out
    espeak voice (one training never hears) at a random rate and pitch, with background noise, written as WAV
    files with a manifest whose ``text`` is the written sentence. Returns the manifest's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    espeak, normalizer = EspeakVoice(), TextNormalizer()
    lines = []
    for i, text in enumerate(texts):
        wave, rate = espeak.synth(normalizer(text), ESPEAK_HELDOUT_VOICES[0], rng.randint(140, 210),
                                  rng.randint(30, 70))
        wave = _add_noise(_fft_resample(wave, rate, sample_rate), nrng)
        sf.write(folder / f"{i:04d}.wav", wave, sample_rate, subtype="PCM_16")
        lines.append(json.dumps({"audio_filepath": f"{i:04d}.wav", "duration": round(len(wave) / sample_rate, 3),
                                 "text": text}))
    manifest = folder / "spoken.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(manifest)
