"""Training data for a LongLoRA run: documents packed into sequences of the target length, or
prompt/response records with the loss on the response only.

Inputs are a file or a folder of files: ``.jsonl`` files hold one JSON object a line (``text``
for documents; ``prompt`` and ``response`` in supervised mode), any other file is one document of
plain text (UTF-8).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

IGNORE = -100  # the label transformers' loss skips


class DataError(ValueError):
    """Training data that cannot make a single sequence, or a record that cannot be read."""


@dataclass(frozen=True)
class TrainingRow:
    """One training row: token ids and labels (``IGNORE`` where no loss is taken)."""

    input_ids: list[int]
    labels: list[int]


def data_files(path: str | os.PathLike[str]) -> list[Path]:
    """The file itself, or the regular files under a folder (sorted, hidden ones skipped)."""
    root = Path(path).expanduser()
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DataError(f"data path {os.fspath(path)!r} does not exist")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise DataError(f"data folder {os.fspath(path)!r} holds no files")
    return files


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{file}: not UTF-8 text (byte {error.start})") from None


def records(path: str | os.PathLike[str], fields: Sequence[str]) -> Iterator[dict[str, str]]:
    """Each record of the data: ``{"text": ...}`` per plain-text file, and per JSONL line the
    ``fields`` it must carry (strings)."""
    for file in data_files(path):
        if file.suffix != ".jsonl":
            if fields != ("text",):
                raise DataError(
                    f"{file}: supervised data must be JSONL with {list(fields)} on each line"
                )
            yield {"text": _read_text(file)}
            continue
        for number, line in enumerate(_read_text(file).splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{file}:{number}: not JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{file}:{number}: a JSON object is needed, got {record!r:.40}")
            missing = [f for f in fields if not isinstance(record.get(f), str)]
            if missing:
                hint = ""
                if fields == ("text",) and "prompt" in record:
                    hint = "; pass --supervised for prompt/response records"
                raise DataError(f"{file}:{number}: needs string field(s) {missing}{hint}")
            yield {f: record[f] for f in fields}


def _ids(tokenizer: Any, text: str, special: bool) -> list[int]:
    # verbose=False: a document longer than the tokenizer's max length is expected here
    return list(tokenizer(text, add_special_tokens=special, verbose=False)["input_ids"])


def packed_sequences(
    tokenizer: Any, path: str | os.PathLike[str], length: int
) -> list[TrainingRow]:
    """Documents tokenized (with the tokenizer's BOS, an EOS after each), concatenated and cut
    into sequences of exactly ``length`` tokens; the tail shorter than a sequence is dropped."""
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for record in records(path, ("text",)):
        ids = _ids(tokenizer, record["text"], special=True)
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
        stream.extend(ids)
    count = len(stream) // length
    if count == 0:
        raise DataError(
            f"the data in {os.fspath(path)!r} holds {len(stream)} tokens, fewer than one sequence "
            f"of {length}; add text or lower the context length"
        )
    if len(stream) % length:
        logger.info("dropping the last %d tokens (less than a sequence)", len(stream) % length)
    return [
        TrainingRow(stream[i * length : (i + 1) * length], stream[i * length : (i + 1) * length])
        for i in range(count)
    ]


def supervised_sequences(
    tokenizer: Any, path: str | os.PathLike[str], length: int
) -> list[TrainingRow]:
    """One row per prompt/response record: the prompt (with the tokenizer's BOS), the response
    and EOS; labels only on the response and EOS. Records longer than ``length`` are skipped
    (counted in a warning)."""
    eos = tokenizer.eos_token_id
    rows: list[TrainingRow] = []
    skipped = 0
    for record in records(path, ("prompt", "response")):
        prompt = _ids(tokenizer, record["prompt"], special=True)
        response = _ids(tokenizer, record["response"], special=False)
        if eos is not None:
            response.append(eos)
        if len(prompt) + len(response) > length:
            skipped += 1
            continue
        rows.append(TrainingRow(prompt + response, [IGNORE] * len(prompt) + response))
    if skipped:
        logger.warning("skipped %d records longer than %d tokens", skipped, length)
    if not rows:
        raise DataError(
            f"no prompt/response record in {os.fspath(path)!r} fits one sequence of {length} "
            f"tokens ({skipped} longer); raise the context length"
        )
    return rows


class Collator:
    """Batches rows, right-padded to the longest (labels ``IGNORE``, attention mask 0 there);
    a batch without padding gets no attention mask, so attention runs its causal fast path."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad = pad_token_id

    def __call__(self, rows: Sequence[TrainingRow | dict[str, Any]]) -> dict[str, Any]:
        import torch

        items = [r if isinstance(r, TrainingRow) else TrainingRow(**r) for r in rows]
        width = max(len(r.input_ids) for r in items)
        ids = [r.input_ids + [self.pad] * (width - len(r.input_ids)) for r in items]
        labels = [r.labels + [IGNORE] * (width - len(r.labels)) for r in items]
        batch = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}
        if any(len(r.input_ids) < width for r in items):
            mask = [[1] * len(r.input_ids) + [0] * (width - len(r.input_ids)) for r in items]
            batch["attention_mask"] = torch.tensor(mask)
        return batch
