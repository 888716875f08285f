//! The Llama-style decoder: RMSNorm, rotary embeddings in Hugging Face's rotate_half
//! layout, grouped-query attention through `scaled_dot_product_attention`, a SwiGLU MLP, no
//! biases, optionally tied embeddings. Variables carry Hugging Face tensor names
//! (`model.layers.0.self_attn.q_proj.weight`, ...), so checkpoints and exports share them.
//!
//! Weights are fp32 (the master copy); `forward` computes in the kind it is given (bf16 on
//! CUDA), casting weights at each use, and keeps norms and softmax statistics in fp32 (the
//! losses, in `crate::model::loss`, too). Every op goes through tch's fallible `f_` API so a
//! libtorch error (out of memory, a bad index) comes back as an error, not a panic.

use tch::nn::{self, Init};
use tch::{Device, Kind, TchError, Tensor};

use crate::engine::config::ModelConfig;
use crate::model::lora::{AdapterMode, LoraAdapter, LoraConfig};

type TResult<T> = Result<T, TchError>;

/// Standard deviation of the normal initialisation (as `LlamaConfig.initializer_range`).
const INIT_STD: f64 = 0.02;

/// Initialisation of the projections that write into the residual stream (`o_proj`,
/// `down_proj`): scaled down with depth, since every layer adds to the same stream.
fn output_std(config: &ModelConfig) -> f64 {
    INIT_STD / (2.0 * config.num_hidden_layers as f64).sqrt()
}

/// Casts `t` to `kind` unless it already is.
fn as_kind(t: &Tensor, kind: Kind) -> TResult<Tensor> {
    if t.kind() == kind {
        Ok(t.shallow_clone())
    } else {
        t.f_to_kind(kind)
    }
}

/// A bias-free linear layer with an `[out, in]` weight, as `nn.Linear(bias=False)`, with an
/// optional low-rank adapter.
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    lora: Option<LoraAdapter>,
}

impl Linear {
    pub fn new(path: nn::Path, in_dim: i64, out_dim: i64, std: f64) -> Self {
        let weight = path.var(
            "weight",
            &[out_dim, in_dim],
            Init::Randn {
                mean: 0.0,
                stdev: std,
            },
        );
        Self { weight, lora: None }
    }

    /// A projection named `name` (`q_proj`, ...) under `parent`, with an adapter when the
    /// LoRA config targets it.
    fn projection(
        parent: &nn::Path,
        name: &str,
        (in_dim, out_dim): (i64, i64),
        std: f64,
        lora: Option<&LoraConfig>,
    ) -> Self {
        let mut linear = Self::new(parent / name, in_dim, out_dim, std);
        linear.lora = lora
            .filter(|l| l.wraps(name))
            .map(|l| LoraAdapter::new(&(parent / name), in_dim, out_dim, l));
        linear
    }

    pub fn forward(&self, x: &Tensor) -> TResult<Tensor> {
        self.forward_with(x, AdapterMode::On)
    }

    pub fn forward_with(&self, x: &Tensor, mode: AdapterMode) -> TResult<Tensor> {
        let y = x.f_linear::<Tensor>(&as_kind(&self.weight, x.kind())?, None)?;
        match &self.lora {
            Some(adapter) if mode != AdapterMode::Off => y.f_add(&adapter.delta(x, mode)?),
            _ => Ok(y),
        }
    }
}

/// Root-mean-square normalisation computed in fp32, as `LlamaRMSNorm`.
#[derive(Debug)]
pub struct RmsNorm {
    pub weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(path: nn::Path, config: &ModelConfig) -> Self {
        Self {
            weight: path.ones("weight", &[config.hidden_size]),
            eps: config.rms_norm_eps,
        }
    }

    pub fn forward(&self, x: &Tensor) -> TResult<Tensor> {
        let kind = x.kind();
        let xf = as_kind(x, Kind::Float)?;
        let variance = xf.f_square()?.f_mean_dim(-1, true, Kind::Float)?;
        let normed = xf.f_mul(&variance.f_add_scalar(self.eps)?.f_rsqrt()?)?;
        // LlamaRMSNorm: weight * hidden.to(input_dtype).
        as_kind(&self.weight, kind)?.f_mul(&as_kind(&normed, kind)?)
    }
}

/// Cos/sin tables for every position, `[max_positions, head_dim]` in fp32, with the
/// frequencies repeated as `cat(freqs, freqs)` (Hugging Face layout).
#[derive(Debug)]
pub struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    pub fn new(config: &ModelConfig, device: Device) -> TResult<Self> {
        let dim = config.head_dim();
        let exponents = Tensor::f_arange_start_step(0, dim, 2, (Kind::Int64, device))?
            .f_to_kind(Kind::Float)?
            .f_div_scalar(dim as f64)?;
        let inv_freq = Tensor::f_full([1], config.rope_theta, (Kind::Float, device))?
            .f_pow(&exponents)?
            .f_reciprocal()?;
        let positions = Tensor::f_arange(config.max_position_embeddings, (Kind::Float, device))?;
        let freqs = positions.f_outer(&inv_freq)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?;
        Ok(Self {
            cos: emb.f_cos()?,
            sin: emb.f_sin()?,
        })
    }

    /// Rotates `x: [batch, heads, seq, head_dim]` whose first position is `start`.
    pub fn apply(&self, x: &Tensor, start: i64) -> TResult<Tensor> {
        let seq = x.size()[2];
        let cos = as_kind(&self.cos.f_narrow(0, start, seq)?, x.kind())?;
        let sin = as_kind(&self.sin.f_narrow(0, start, seq)?, x.kind())?;
        x.f_mul(&cos)?.f_add(&rotate_half(x)?.f_mul(&sin)?)
    }

    /// Rotates `x: [batch, heads, seq, head_dim]` whose tokens sit at `positions: [batch, seq]`.
    pub fn apply_at(&self, x: &Tensor, positions: &Tensor) -> TResult<Tensor> {
        let (b, t) = positions.size2()?;
        let table = |t_: &Tensor| -> TResult<Tensor> {
            as_kind(
                &t_.f_index_select(0, &positions.f_reshape([-1])?)?
                    .f_view([b, t, -1])?
                    .f_unsqueeze(1)?,
                x.kind(),
            )
        };
        x.f_mul(&table(&self.cos)?)?
            .f_add(&rotate_half(x)?.f_mul(&table(&self.sin)?)?)
    }
}

/// Rows that hold several sequences back to back (packing, so no compute goes to padding):
/// each token's position within its own sequence, and which keys each query may see.
#[derive(Debug, Clone, Copy)]
pub struct Packing<'a> {
    /// `[batch, seq]` int64 positions, restarting at 0 where each sequence starts.
    pub positions: &'a Tensor,
    /// `[batch, 1, seq, seq]` bool, true where the query (row) may attend to the key
    /// (column): earlier or same tokens of its own sequence, never another sequence's.
    pub mask: &'a Tensor,
}

/// `cat(-x2, x1)` over the last dimension, where x1 and x2 are its halves.
fn rotate_half(x: &Tensor) -> TResult<Tensor> {
    let half = x.size()[3] / 2;
    let x1 = x.f_narrow(-1, 0, half)?;
    let x2 = x.f_narrow(-1, half, half)?;
    Tensor::f_cat(&[&x2.f_neg()?, &x1], -1)
}

/// Keys and values of every layer for positions `0..len`, preallocated to `capacity`.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: i64,
    capacity: i64,
}

impl KvCache {
    pub fn new(
        config: &ModelConfig,
        batch: i64,
        capacity: i64,
        kind: Kind,
        device: Device,
    ) -> TResult<Self> {
        let shape = [
            batch,
            config.num_key_value_heads,
            capacity,
            config.head_dim(),
        ];
        let layers = (0..config.num_hidden_layers)
            .map(|_| {
                Ok((
                    Tensor::f_zeros(shape, (kind, device))?,
                    Tensor::f_zeros(shape, (kind, device))?,
                ))
            })
            .collect::<TResult<Vec<_>>>()?;
        Ok(Self {
            layers,
            len: 0,
            capacity,
        })
    }

    /// Positions already held.
    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> i64 {
        self.capacity
    }
}

/// Where a forward's tokens sit: one sequence per row from `start` (extending a KV cache
/// when there is one), or packed rows.
#[derive(Debug)]
pub enum Input<'a> {
    Causal {
        start: i64,
        cache: Option<&'a mut KvCache>,
    },
    Packed(Packing<'a>),
}

/// [`Input`] as one layer sees it: its own slice of the cache.
#[derive(Debug)]
pub enum Span<'a> {
    Causal {
        start: i64,
        cache: Option<&'a mut (Tensor, Tensor)>,
    },
    Packed(Packing<'a>),
}

/// Grouped-query self-attention with rotary positions.
#[derive(Debug)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
}

impl Attention {
    pub fn new(path: nn::Path, config: &ModelConfig, lora: Option<&LoraConfig>) -> Self {
        let (h, d) = (config.hidden_size, config.head_dim());
        let out_std = output_std(config);
        let (q, kv) = (
            config.num_attention_heads * d,
            config.num_key_value_heads * d,
        );
        Self {
            q_proj: Linear::projection(&path, "q_proj", (h, q), INIT_STD, lora),
            k_proj: Linear::projection(&path, "k_proj", (h, kv), INIT_STD, lora),
            v_proj: Linear::projection(&path, "v_proj", (h, kv), INIT_STD, lora),
            o_proj: Linear::projection(&path, "o_proj", (q, h), out_std, lora),
            heads: config.num_attention_heads,
            kv_heads: config.num_key_value_heads,
            head_dim: d,
        }
    }

    /// `x: [batch, seq, hidden]` at positions `start..start + seq`, or packed. With a cache,
    /// keys and values of earlier positions come from it and this chunk's are appended to it.
    pub fn forward(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        at: &mut Span<'_>,
        mode: AdapterMode,
    ) -> TResult<Tensor> {
        let (b, t, _) = x.size3()?;
        let split = |proj: &Linear, heads: i64| -> TResult<Tensor> {
            proj.forward_with(x, mode)?
                .f_view([b, t, heads, self.head_dim])?
                .f_transpose(1, 2)
        };
        let (q, k, v) = (
            split(&self.q_proj, self.heads)?,
            split(&self.k_proj, self.kv_heads)?,
            split(&self.v_proj, self.kv_heads)?,
        );
        let y = match at {
            Span::Packed(packing) => {
                let q = rotary.apply_at(&q, packing.positions)?;
                let k = self.repeat_kv(&rotary.apply_at(&k, packing.positions)?)?;
                let v = self.repeat_kv(&v)?;
                Tensor::f_scaled_dot_product_attention(
                    &q,
                    &k,
                    &v,
                    Some(packing.mask),
                    0.0,
                    false,
                    None,
                    false,
                )?
            }
            Span::Causal { start, cache } => {
                self.causal(q, k, v, rotary, *start, cache.as_deref_mut())?
            }
        };
        let y = y
            .f_transpose(1, 2)?
            .f_reshape([b, t, self.heads * self.head_dim])?;
        self.o_proj.forward_with(&y, mode)
    }

    /// Attention of `t` new positions from `start` over themselves and the cached ones.
    fn causal(
        &self,
        q: Tensor,
        k: Tensor,
        mut v: Tensor,
        rotary: &Rotary,
        start: i64,
        cache: Option<&mut (Tensor, Tensor)>,
    ) -> TResult<Tensor> {
        let t = q.size()[2];
        let q = rotary.apply(&q, start)?;
        let mut k = rotary.apply(&k, start)?;
        if let Some((k_cache, v_cache)) = cache {
            k_cache.f_narrow(2, start, t)?.f_copy_(&k)?;
            v_cache.f_narrow(2, start, t)?.f_copy_(&v)?;
            k = k_cache.f_narrow(2, 0, start + t)?;
            v = v_cache.f_narrow(2, 0, start + t)?;
        }
        let k = self.repeat_kv(&k)?;
        let v = self.repeat_kv(&v)?;
        // SDPA's is_causal aligns the mask top-left, which is right only when queries and
        // keys start together; a chunk after cached positions needs an explicit mask, and a
        // single new token attends to everything.
        let device = q.device();
        if start == 0 {
            Tensor::f_scaled_dot_product_attention::<Tensor>(
                &q, &k, &v, None, 0.0, true, None, false,
            )
        } else if t == 1 {
            Tensor::f_scaled_dot_product_attention::<Tensor>(
                &q, &k, &v, None, 0.0, false, None, false,
            )
        } else {
            let rows =
                Tensor::f_arange_start(start, start + t, (Kind::Int64, device))?.f_unsqueeze(1)?;
            let cols = Tensor::f_arange(start + t, (Kind::Int64, device))?.f_unsqueeze(0)?;
            let mask = cols.f_le_tensor(&rows)?;
            Tensor::f_scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, None, false)
        }
    }

    /// `[b, kv_heads, s, d]` to `[b, heads, s, d]`, each key/value head serving a group of
    /// query heads (Hugging Face `repeat_kv`).
    fn repeat_kv(&self, x: &Tensor) -> TResult<Tensor> {
        let groups = self.heads / self.kv_heads;
        if groups == 1 {
            return Ok(x.shallow_clone());
        }
        let size = x.size();
        let (b, s) = (size[0], size[2]);
        x.f_unsqueeze(2)?
            .f_expand([b, self.kv_heads, groups, s, self.head_dim], false)?
            .f_reshape([b, self.heads, s, self.head_dim])
    }
}

/// SwiGLU: `down(silu(gate(x)) * up(x))`.
#[derive(Debug)]
pub struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    pub fn new(path: nn::Path, config: &ModelConfig, lora: Option<&LoraConfig>) -> Self {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let out_std = output_std(config);
        Self {
            gate_proj: Linear::projection(&path, "gate_proj", (h, i), INIT_STD, lora),
            up_proj: Linear::projection(&path, "up_proj", (h, i), INIT_STD, lora),
            down_proj: Linear::projection(&path, "down_proj", (i, h), out_std, lora),
        }
    }

    pub fn forward(&self, x: &Tensor, mode: AdapterMode) -> TResult<Tensor> {
        let gate = self.gate_proj.forward_with(x, mode)?.f_silu()?;
        self.down_proj
            .forward_with(&gate.f_mul(&self.up_proj.forward_with(x, mode)?)?, mode)
    }
}

/// One pre-norm decoder layer.
#[derive(Debug)]
pub struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    pub fn new(path: nn::Path, config: &ModelConfig, lora: Option<&LoraConfig>) -> Self {
        Self {
            input_layernorm: RmsNorm::new(&path / "input_layernorm", config),
            self_attn: Attention::new(&path / "self_attn", config, lora),
            post_attention_layernorm: RmsNorm::new(&path / "post_attention_layernorm", config),
            mlp: Mlp::new(&path / "mlp", config, lora),
        }
    }

    pub fn forward(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        at: &mut Span<'_>,
        mode: AdapterMode,
    ) -> TResult<Tensor> {
        let attn = self
            .self_attn
            .forward(&self.input_layernorm.forward(x)?, rotary, at, mode)?;
        let h = x.f_add(&attn)?;
        h.f_add(
            &self
                .mlp
                .forward(&self.post_attention_layernorm.forward(&h)?, mode)?,
        )
    }
}

/// The whole decoder (`LlamaForCausalLM`).
#[derive(Debug)]
pub struct Llama {
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Option<Linear>,
    rotary: Rotary,
    config: ModelConfig,
}

impl Llama {
    /// Creates the variables under `path` (normally a `VarStore`'s root), initialised from
    /// libtorch's generator: seed it with `tch::manual_seed` first for a reproducible model.
    pub fn new(path: &nn::Path, config: &ModelConfig, lora: Option<&LoraConfig>) -> TResult<Self> {
        let model = path / "model";
        let embed_tokens = (&model / "embed_tokens").var(
            "weight",
            &[config.vocab_size, config.hidden_size],
            Init::Randn {
                mean: 0.0,
                stdev: INIT_STD,
            },
        );
        let layers = (0..config.num_hidden_layers)
            .map(|i| DecoderLayer::new(&model / "layers" / i, config, lora))
            .collect();
        let norm = RmsNorm::new(&model / "norm", config);
        let lm_head = (!config.tie_word_embeddings).then(|| {
            Linear::new(
                path / "lm_head",
                config.hidden_size,
                config.vocab_size,
                INIT_STD,
            )
        });
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary: Rotary::new(config, path.device())?,
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Logits `[batch, seq, vocab]` in `kind` for `ids: [batch, seq]` (int64) at positions
    /// `start..`; `start` must equal the cache length when a cache is given.
    pub fn forward(
        &self,
        ids: &Tensor,
        start: i64,
        cache: Option<&mut KvCache>,
        kind: Kind,
        mode: AdapterMode,
    ) -> TResult<Tensor> {
        let hidden = self.hidden(ids, Input::Causal { start, cache }, kind, mode)?;
        self.logits(&hidden)
    }

    /// The last layer's normed output `[batch, seq, hidden]` in `kind` for `ids` placed as
    /// `input` says.
    pub fn hidden(
        &self,
        ids: &Tensor,
        input: Input<'_>,
        kind: Kind,
        mode: AdapterMode,
    ) -> TResult<Tensor> {
        let (_, t) = ids.size2()?;
        let (start, mut cache, packing) = match input {
            Input::Causal { start, cache } => {
                self.check_span(start, t, cache.as_deref())?;
                (start, cache, None)
            }
            Input::Packed(packing) => {
                // Positions restart per sequence: a row may be longer than the context.
                let last = i64::try_from(packing.positions.f_max()?)?;
                self.check_span(last, 1, None)?;
                (0, None, Some(packing))
            }
        };
        let mut x = as_kind(
            &Tensor::f_embedding(&self.embed_tokens, ids, -1, false, false)?,
            kind,
        )?;
        for (i, layer) in self.layers.iter().enumerate() {
            let mut span = match packing {
                Some(packing) => Span::Packed(packing),
                None => Span::Causal {
                    start,
                    cache: cache.as_deref_mut().and_then(|c| c.layers.get_mut(i)),
                },
            };
            x = layer.forward(&x, &self.rotary, &mut span, mode)?;
        }
        if let Some(cache) = cache {
            cache.len = start + t;
        }
        self.norm.forward(&x)
    }

    /// The output projection's weight `[vocab, hidden]` (the embeddings when tied), when the
    /// logits are a plain product with it (no LoRA adapter on the head).
    pub fn output_weight(&self) -> Option<&Tensor> {
        match &self.lm_head {
            None => Some(&self.embed_tokens),
            Some(head) if head.lora.is_none() => Some(&head.weight),
            Some(_) => None,
        }
    }

    /// Logits `[batch, seq, vocab]` from [`Llama::hidden`]'s output, in its kind.
    pub fn logits(&self, hidden: &Tensor) -> TResult<Tensor> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => hidden.f_linear::<Tensor>(&as_kind(&self.embed_tokens, hidden.kind())?, None),
        }
    }

    /// Refuses positions past the context or a cache that does not line up with `start`.
    fn check_span(&self, start: i64, t: i64, cache: Option<&KvCache>) -> TResult<()> {
        if start + t > self.config.max_position_embeddings {
            return Err(TchError::Shape(format!(
                "positions up to {} exceed max_position_embeddings {}",
                start + t,
                self.config.max_position_embeddings
            )));
        }
        if let Some(cache) = cache
            && (cache.len != start || start + t > cache.capacity)
        {
            return Err(TchError::Shape(format!(
                "kv cache holds {} of {} positions; cannot append {t} at position {start}",
                cache.len, cache.capacity
            )));
        }
        Ok(())
    }
}
