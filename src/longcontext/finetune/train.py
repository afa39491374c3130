"""A LongLoRA run end to end on the transformers ``Trainer``: check, read the data, load, train,
save the adapter, merge."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from longcontext.finetune.config import FinetuneConfig, check_rope_model, rope_for
from longcontext.finetune.data import Collator, TrainingRow, packed_sequences, supervised_sequences

if TYPE_CHECKING:
    from longcontext.rope import RopeScaling

logger = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"


@dataclass(frozen=True)
class FinetuneResult:
    """What a run wrote and how it went.

    Attributes:
        adapter: the LongLoRA adapter directory (``LongContextLLM(model, lora=adapter)``).
        merged: the merged checkpoint (``LongContextLLM(merged)``, vLLM), or ``None``.
        losses: the training loss at each logged step.
        sequences: training rows read from the data.
        seconds: wall time of the training loop.
    """

    adapter: Path
    merged: Path | None
    losses: list[float]
    sequences: int
    seconds: float


def read_data(settings: FinetuneConfig, tokenizer: Any, data: str | os.PathLike[str]) -> list[Any]:
    """The training rows: packed documents, or prompt/response records in supervised mode."""
    read = supervised_sequences if settings.supervised else packed_sequences
    return read(tokenizer, data, settings.context_length)


class _Rows:
    """A map-style dataset over the rows (the Trainer's sampler indexes it)."""

    def __init__(self, rows: list[TrainingRow]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> TrainingRow:
        return self.rows[index]


def _progress_callback(report: Callable[[int, int, float], None]) -> Any:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                report(state.global_step, state.max_steps, float(logs["loss"]))

    return Progress()


@dataclass(frozen=True)
class Plan:
    """A checked run, before any weights load: the base config, the RoPE scaling (``None``
    within the model's window), the tokenizer and the training rows."""

    settings: FinetuneConfig
    config: Any
    rope: RopeScaling | None
    tokenizer: Any
    rows: list[TrainingRow]


def plan(settings: FinetuneConfig, data: str | os.PathLike[str]) -> Plan:
    """Check the model, the scaling, an adapter to resume and the data; read the data.

    Raises:
        ValueError: a model without RoPE, an architecture or method RoPE scaling does not
            support, data shorter than one sequence (``DataError``), an adapter to resume that
            was made for another base.
        OSError: a model that cannot be found.
    """
    from transformers import AutoTokenizer

    from longcontext.llm.lora import check_adapter_fits, inspect_adapter

    config = check_rope_model(settings.model, settings.trust_remote_code)
    rope = rope_for(config, settings)
    if settings.resume is not None:
        check_adapter_fits(settings.model, inspect_adapter(settings.resume))
    tokenizer = AutoTokenizer.from_pretrained(
        settings.model, trust_remote_code=settings.trust_remote_code
    )
    return Plan(settings, config, rope, tokenizer, read_data(settings, tokenizer, data))


def finetune(
    settings: FinetuneConfig | Plan,
    data: str | os.PathLike[str] | None,
    output: str | os.PathLike[str],
    *,
    merge: bool = True,
    progress: Callable[[int, int, float], None] | None = None,
    logging_steps: int = 1,
) -> FinetuneResult:
    """Fine-tune the base on ``data`` and write ``output/adapter`` (and ``output/merged`` when
    ``merge``). ``settings`` may be a :class:`Plan` already made (then ``data`` is ignored).
    ``progress(step, steps, loss)`` is called at each log.

    Raises:
        ValueError, OSError: as :func:`plan`.
    """
    import torch
    from transformers import PrinterCallback, Trainer, TrainingArguments

    from longcontext.finetune.model import load_for_training, save_adapter, save_merged

    if isinstance(settings, Plan):
        checked = settings
    else:
        if data is None:
            raise ValueError("finetune() needs data: a text/JSONL file or a folder of them")
        checked = plan(settings, data)
    settings, rope, tokenizer = checked.settings, checked.rope, checked.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        pad = 0  # padded positions carry no label and are masked: any id will do
    model = load_for_training(settings, checked.config, rope)
    if settings.gradient_checkpointing:
        model.enable_input_require_grads()  # frozen embeddings: checkpoints still need grads
    cuda = torch.cuda.is_available()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    losses: list[float] = []

    def record(step: int, steps: int, loss: float) -> None:
        losses.append(loss)
        if progress is not None:
            progress(step, steps, loss)

    with tempfile.TemporaryDirectory(prefix=".trainer-", dir=out) as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            max_steps=settings.steps,
            per_device_train_batch_size=settings.batch_size,
            gradient_accumulation_steps=settings.gradient_accumulation,
            learning_rate=settings.learning_rate,
            warmup_steps=settings.warmup_steps,
            lr_scheduler_type="constant_with_warmup",  # LongLoRA's schedule
            weight_decay=0.0,
            logging_steps=logging_steps,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=settings.seed,
            use_cpu=not cuda,
            bf16=cuda and model.dtype == torch.bfloat16,
            gradient_checkpointing=settings.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
            remove_unused_columns=False,  # rows are dataclasses, not named columns
            dataloader_num_workers=0,
            optim="adamw_torch",
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=_Rows(checked.rows),  # type: ignore[arg-type]
            data_collator=Collator(pad),
            callbacks=[_progress_callback(record)],
        )
        # the progress callback reports; transformers' printer would write dicts to stdout
        trainer.remove_callback(PrinterCallback)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    adapter = save_adapter(model, out / ADAPTER_DIR, settings, rope)
    del trainer, model
    merged = save_merged(adapter, out / MERGED_DIR, settings, rope) if merge else None
    return FinetuneResult(adapter, merged, losses, len(checked.rows), seconds)
