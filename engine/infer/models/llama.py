"""The llama family (Llama 2/3, Mistral, Qwen2, SmolLM) as one model over the engine's paged attention.

The variants differ only in config: GQA head counts, qkv bias (Qwen2 always, Llama with attention_bias),
tied embeddings, rope scaling. Weights are read straight from the HF safetensors (sharded or not); q/k/v and
gate/up are stacked into one matmul each at load time. Hidden states are flat [tokens, hidden]: a step's
tokens from all sequences form one varlen batch, which is what continuous batching needs.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from engine.infer.layers.activation import SiluAndMul
from engine.infer.layers.attention import Attention, AttentionMetadata
from engine.infer.layers.embed_head import LMHead, tie
from engine.infer.layers.linear import MergedLinear
from engine.infer.layers.norm import RMSNorm
from engine.infer.layers.rotary import RotaryEmbedding

# checkpoint projection name -> (our stacked module, part)
STACKED = {
    "q_proj": ("qkv_proj", "q"), "k_proj": ("qkv_proj", "k"), "v_proj": ("qkv_proj", "v"),
    "gate_proj": ("gate_up_proj", "gate"), "up_proj": ("gate_up_proj", "up"),
}


def head_dim_of(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def rope_parameters_of(config) -> dict:
    """transformers 5 keeps rope settings in rope_parameters; 4.x in rope_theta + rope_scaling."""
    rope = getattr(config, "rope_parameters", None)
    if rope:
        return dict(rope)
    return {"rope_theta": getattr(config, "rope_theta", 10000.0), **(getattr(config, "rope_scaling", None) or {})}


class LlamaAttention(nn.Module):
    def __init__(self, config, rotary: RotaryEmbedding):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = head_dim_of(config)
        qkv_bias = config.model_type == "qwen2" or bool(getattr(config, "attention_bias", False))
        q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self.qkv_proj = MergedLinear(config.hidden_size, {"q": q_size, "k": kv_size, "v": kv_size}, qkv_bias)
        o_bias = config.model_type != "qwen2" and bool(getattr(config, "attention_bias", False))
        self.o_proj = nn.Linear(q_size, config.hidden_size, bias=o_bias)
        self.rotary = rotary
        self.attn = Attention(self.num_heads, self.num_kv_heads, self.head_dim, self.head_dim**-0.5)
        self.sizes = [q_size, kv_size, kv_size]

    def forward(self, positions: torch.Tensor, x: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        q, k, v = self.qkv_proj(x).split(self.sizes, dim=-1)
        q = q.view(-1, self.num_heads, self.head_dim)
        k = k.view(-1, self.num_kv_heads, self.head_dim)
        v = v.view(-1, self.num_kv_heads, self.head_dim)
        q, k = self.rotary(positions, q, k)
        out = self.attn(q, k, v, meta)
        return self.o_proj(out.flatten(1))


class LlamaMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        bias = bool(getattr(config, "mlp_bias", False))
        size = config.intermediate_size
        self.gate_up_proj = MergedLinear(config.hidden_size, {"gate": size, "up": size}, bias)
        self.down_proj = nn.Linear(size, config.hidden_size, bias=bias)
        self.act = SiluAndMul()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_up_proj(x)))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config, rotary: RotaryEmbedding):
        super().__init__()
        self.self_attn = LlamaAttention(config, rotary)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, positions, x, residual, meta):
        if residual is None:
            residual, x = x, self.input_layernorm(x)
        else:
            x, residual = self.input_layernorm(x, residual)
        x = self.self_attn(positions, x, meta)
        x, residual = self.post_attention_layernorm(x, residual)
        return self.mlp(x), residual


class LlamaForCausalLM(nn.Module):
    def __init__(self, config, max_position: int):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        # One cos/sin table shared by all layers.
        rotary = RotaryEmbedding(head_dim_of(config), max_position, rope_parameters_of(config))
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, rotary) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = LMHead(config.hidden_size, config.vocab_size)
        self.tied = bool(getattr(config, "tie_word_embeddings", False))
        if self.tied:
            tie(self.lm_head, self.embed_tokens)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """Flat tokens [T] -> final hidden states [T, hidden]."""
        x = self.embed_tokens(input_ids)
        residual = None
        for layer in self.layers:
            x, residual = layer(positions, x, residual, meta)
        x, _ = self.norm(x, residual)
        return x

    def compute_logits(self, hidden: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        return self.lm_head(hidden, rows)

    def attention_layers(self) -> list[Attention]:
        return [layer.self_attn.attn for layer in self.layers]

    @torch.no_grad()
    def load_weights(self, folder: str | Path) -> None:
        """Copy every tensor of the folder's safetensors into our (partly stacked) parameters."""
        params = dict(self.named_parameters(remove_duplicate=False))
        loaded: set[str] = set()
        for file in _safetensors_files(Path(folder)):
            with safe_open(str(file), framework="pt") as f:
                for name in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                    if "rotary_emb.inv_freq" in name:
                        continue
                    target = self._load_one(name.removeprefix("model."), f.get_tensor(name), params)
                    loaded.add(target)
        missing = {n for n in params if n not in loaded}
        if self.tied:
            missing.discard("lm_head.weight")
        if missing:
            raise ValueError(f"{folder}: checkpoint lacks weights for {sorted(missing)[:5]}")

    def _load_one(self, name: str, tensor: torch.Tensor, params: dict[str, nn.Parameter]) -> str:
        parts = name.rsplit(".", 2)
        if len(parts) == 3 and parts[1] in STACKED:
            stacked, part = STACKED[parts[1]]
            module = self.get_submodule(f"{parts[0]}.{stacked}")
            module.load_part(part, parts[2], tensor)
            return f"{parts[0]}.{stacked}.{parts[2]}"
        if name not in params:
            raise ValueError(f"checkpoint tensor {name!r} has no place in the {self.config.model_type} model")
        if params[name].shape != tensor.shape:
            raise ValueError(f"{name}: checkpoint shape {tuple(tensor.shape)}, expected {tuple(params[name].shape)}")
        params[name].copy_(tensor)
        return name


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / s for s in shards]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors weights")
    return files
