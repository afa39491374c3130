"""S2-Attn as a transformers attention function: the group pattern, padding, models, gradients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import make_tiny_llama, tiny_llama_dir, tiny_qwen2_dir  # noqa: F401 - fixtures

from longcontext.finetune import s2attn


def _reference_mask(heads: int, length: int, group: int) -> torch.Tensor:
    """(H, L, L) boolean: causal, and the same group (shifted by half for the second half of the
    heads, with a short first group and no wrap-around); one group covering L is plain causal."""
    i = torch.arange(length)[:, None]
    j = torch.arange(length)[None, :]
    causal = j <= i
    if length <= group:
        return causal.expand(heads, length, length)
    offset = group - group // 2  # the shifted groups start at group // 2
    plain = (i // group) == (j // group)
    shifted = ((i + offset) // group) == ((j + offset) // group)
    half = heads // 2
    return torch.stack([causal & (plain if h < half else shifted) for h in range(heads)])


def _reference(q: Any, k: Any, v: Any, group: int, pad: Any = None) -> torch.Tensor:
    heads, length = q.shape[1], q.shape[2]
    k = k.repeat_interleave(heads // k.shape[1], dim=1)
    v = v.repeat_interleave(heads // v.shape[1], dim=1)
    mask = _reference_mask(heads, length, group)[None]
    if pad is not None:
        mask = mask & pad
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _qkv(batch: int, heads: int, kv_heads: int, length: int, seed: int = 0) -> tuple[Any, ...]:
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, length, 16, generator=gen)
    k = torch.randn(batch, kv_heads, length, 16, generator=gen)
    v = torch.randn(batch, kv_heads, length, 16, generator=gen)
    return q, k, v


@pytest.mark.parametrize(
    ("heads", "kv_heads", "length", "group"),
    [(4, 4, 32, 8), (4, 2, 30, 8), (8, 2, 37, 6), (2, 1, 16, 5), (4, 1, 10, 16), (3, 3, 24, 8)],
)
def test_matches_the_explicit_block_mask(heads: int, kv_heads: int, length: int, group: int):
    q, k, v = _qkv(2, heads, kv_heads, length)
    got = s2attn.s2_attention(q, k, v, group)
    torch.testing.assert_close(got, _reference(q, k, v, group), atol=1e-5, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    kv_heads=st.integers(1, 3),
    rep=st.integers(1, 3),
    length=st.integers(1, 40),
    group=st.integers(2, 17),
    batch=st.integers(1, 2),
)
def test_any_shape_matches_the_block_mask(
    kv_heads: int, rep: int, length: int, group: int, batch: int
):
    q, k, v = _qkv(batch, kv_heads * rep, kv_heads, length, seed=length * 31 + group)
    got = s2attn.s2_attention(q, k, v, group)
    torch.testing.assert_close(got, _reference(q, k, v, group), atol=1e-5, rtol=1e-5)


def test_one_group_covering_the_sequence_is_full_causal_attention():
    q, k, v = _qkv(2, 4, 2, 24)
    full = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), is_causal=True
    )
    for group in (24, 32, 100):
        torch.testing.assert_close(s2attn.s2_attention(q, k, v, group), full)


def test_a_token_outside_a_querys_group_does_not_change_it():
    heads, length, group = 4, 32, 8
    q, k, v = _qkv(1, heads, heads, length)
    base = s2attn.s2_attention(q, k, v, group)
    allowed = _reference_mask(heads, length, group)
    for j in (0, 3, 4, 11, 12, 27, 28, 31):
        k2, v2 = k.clone(), v.clone()
        k2[:, :, j] += 5.0
        v2[:, :, j] -= 3.0
        out = s2attn.s2_attention(q, k2, v2, group)
        for h in range(heads):
            changed = (out[0, h] - base[0, h]).abs().amax(-1) > 1e-6
            # exactly the queries whose (shifted) group holds token j change: no leak, no wrap
            assert torch.equal(changed, allowed[h, :, j]), (h, j)


def test_the_shifted_half_does_not_wrap_around():
    """LongLoRA's rolled implementation lets the last half-group see the first; here the first
    half-group of the shifted heads sees only itself and the last tokens never see it."""
    q, k, v = _qkv(1, 2, 2, 16)
    base = s2attn.s2_attention(q, k, v, 8)
    v2 = v.clone()
    v2[:, :, 0] += 10
    out = s2attn.s2_attention(q, k, v2, 8)
    shifted = (out[0, 1] - base[0, 1]).abs().amax(-1) > 1e-6
    assert shifted.tolist() == [True] * 4 + [False] * 12


def test_a_padding_mask_is_honoured_within_groups():
    heads, length, group = 4, 20, 8
    q, k, v = _qkv(2, heads, 2, length)
    pad = torch.ones(2, 1, length, length, dtype=torch.bool)
    pad[1, :, :, :3] = False  # left padding of the second row: nobody attends to it ...
    pad[1, :, torch.arange(3), torch.arange(3)] = True  # ... except the pads themselves
    torch.testing.assert_close(
        s2attn.s2_attention(q, k, v, group, attention_mask=pad),
        _reference(q, k, v, group, pad),
        atol=1e-5,
        rtol=1e-5,
    )
    shared = pad[1:]  # one mask broadcast over the batch
    torch.testing.assert_close(
        s2attn.s2_attention(q, k, v, group, attention_mask=shared),
        _reference(q, k, v, group, shared),
        atol=1e-5,
        rtol=1e-5,
    )
    additive = torch.zeros(pad.shape).masked_fill(~pad, torch.finfo(torch.float32).min)
    torch.testing.assert_close(
        s2attn.s2_attention(q, k, v, group, attention_mask=additive),
        _reference(q, k, v, group, pad),
        atol=1e-5,
        rtol=1e-5,
    )


def test_bad_group_sizes_are_named():
    q, k, v = _qkv(1, 2, 2, 8)
    for bad in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="group size must be an int >= 2"):
            s2attn.s2_attention(q, k, v, bad)  # type: ignore[arg-type]


# -- through transformers -------------------------------------------------------------------


def _load(path: Path, group: int | None = 8) -> Any:
    from transformers import AutoModelForCausalLM

    name = s2attn.register()
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=name)
    model.config.s2attn_group_size = group
    return model


@pytest.fixture(scope="module")
def tiny_gqa_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 query heads sharing 2 key/value heads."""
    path = tmp_path_factory.mktemp("tiny-gqa")
    return make_tiny_llama(path, num_attention_heads=4, num_key_value_heads=2, head_dim=16)


@pytest.fixture(params=["llama", "qwen2", "gqa"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    name = {"llama": "tiny_llama_dir", "qwen2": "tiny_qwen2_dir", "gqa": "tiny_gqa_dir"}
    return Path(request.getfixturevalue(name[request.param]))


def test_registered_through_the_attention_interface(model_dir: Path):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    model = _load(model_dir)
    assert ALL_ATTENTION_FUNCTIONS["s2attn"] is s2attn.s2attn_forward
    assert model.config._attn_implementation == "s2attn"


def test_model_first_layer_sees_only_its_groups(model_dir: Path):
    """Training mode: a token outside both of a query's groups leaves the first layer's output
    at that query unchanged; a token inside one of them changes it."""
    model = _load(model_dir).train()
    model.config.attention_dropout = 0.0
    ids = torch.randint(10, 400, (1, 32), generator=torch.Generator().manual_seed(3))

    def first_layer(input_ids: Any) -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids, output_hidden_states=True).hidden_states[1][0]

    base = first_layer(ids)
    changed = ids.clone()
    changed[0, 10] = (ids[0, 10] + 7) % 500  # groups [8, 16) and shifted [4, 12)
    diff = (first_layer(changed) - base).abs().amax(-1) > 1e-6
    # query 20: groups [16, 24) and [20, 28): unchanged; queries 10..15 (both halves): changed
    assert not diff[20] and not diff[16:].any()
    assert diff[10:16].all()
    assert not diff[:10].any()


def test_eval_mode_is_full_attention(model_dir: Path):
    from transformers import AutoModelForCausalLM

    ids = torch.randint(10, 400, (2, 24), generator=torch.Generator().manual_seed(4))
    s2 = _load(model_dir).eval()
    sdpa = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa").eval()
    with torch.no_grad():
        torch.testing.assert_close(s2(ids).logits, sdpa(ids).logits)
        s2.train()
        with s2attn.full_attention():
            torch.testing.assert_close(s2(ids).logits, sdpa(ids).logits)
        with s2attn.group_size(4):  # the context variable wins over the config
            assert not torch.allclose(s2(ids).logits, sdpa(ids).logits)


def test_gradients_flow_through_s2attn(tiny_llama_dir: Path):  # noqa: F811
    model = _load(tiny_llama_dir).train()
    ids = torch.randint(10, 400, (2, 32), generator=torch.Generator().manual_seed(5))
    loss = model(ids, labels=ids).loss
    loss.backward()
    for name, param in model.named_parameters():
        if "self_attn" in name:
            assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("family", ["qwen3", "mistral"])
def test_other_architectures_use_it_unpatched(family: str):
    """Qwen3 (q/k norms) and Mistral, built from their configs: the first layer in training
    mode sees only its groups, and the output equals sdpa's when one group covers the input."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        family, vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=None,
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=s2attn.register())
    model.train()
    model.config.s2attn_group_size = 8
    ids = torch.randint(0, 128, (1, 32), generator=torch.Generator().manual_seed(6))
    changed = ids.clone()
    changed[0, 10] = (ids[0, 10] + 1) % 128

    def hidden(x: Any) -> torch.Tensor:
        with torch.no_grad():
            return model(x, output_hidden_states=True).hidden_states[1][0]

    diff = (hidden(changed) - hidden(ids)).abs().amax(-1) > 1e-6
    assert diff[10:16].all() and not diff[:10].any() and not diff[16:].any()
    with torch.no_grad(), s2attn.group_size(32):
        s2 = model(ids).logits
        with s2attn.full_attention():
            torch.testing.assert_close(s2, model(ids).logits)
