//! The Llama-style decoder: RMSNorm, rotary embeddings in Hugging Face's rotate_half
//! layout, grouped-query attention through `scaled_dot_product_attention`, a SwiGLU MLP, no
//! biases, optionally tied embeddings. Variables carry Hugging Face tensor names
//! (`model.layers.0.self_attn.q_proj.weight`, ...), so checkpoints and exports share them.
//!
//! Weights are fp32 (the master copy); `forward` computes in the kind it is given (bf16 on
//! CUDA), casting weights at each use, and keeps norms, softmax statistics and the loss in
//! fp32. Every op goes through tch's fallible `f_` API so a libtorch error (out of memory, a
//! bad index) comes back as an error, not a panic.

use tch::nn::{self, Init};
use tch::{Device, Kind, TchError, Tensor};

use crate::config::ModelConfig;

type TResult<T> = Result<T, TchError>;

/// Standard deviation of the normal initialisation (as `LlamaConfig.initializer_range`).
const INIT_STD: f64 = 0.02;

/// Casts `t` to `kind` unless it already is.
fn as_kind(t: &Tensor, kind: Kind) -> TResult<Tensor> {
    if t.kind() == kind {
        Ok(t.shallow_clone())
    } else {
        t.f_to_kind(kind)
    }
}

/// A bias-free linear layer with an `[out, in]` weight, as `nn.Linear(bias=False)`.
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
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
        Self { weight }
    }

    pub fn forward(&self, x: &Tensor) -> TResult<Tensor> {
        x.f_linear::<Tensor>(&as_kind(&self.weight, x.kind())?, None)
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
    pub fn new(path: nn::Path, config: &ModelConfig) -> Self {
        let (h, d) = (config.hidden_size, config.head_dim());
        let out_std = INIT_STD / (2.0 * config.num_hidden_layers as f64).sqrt();
        Self {
            q_proj: Linear::new(
                &path / "q_proj",
                h,
                config.num_attention_heads * d,
                INIT_STD,
            ),
            k_proj: Linear::new(
                &path / "k_proj",
                h,
                config.num_key_value_heads * d,
                INIT_STD,
            ),
            v_proj: Linear::new(
                &path / "v_proj",
                h,
                config.num_key_value_heads * d,
                INIT_STD,
            ),
            o_proj: Linear::new(&path / "o_proj", config.num_attention_heads * d, h, out_std),
            heads: config.num_attention_heads,
            kv_heads: config.num_key_value_heads,
            head_dim: d,
        }
    }

    /// `x: [batch, seq, hidden]` at positions `start..start + seq`. With a cache, keys and
    /// values of earlier positions come from it and this chunk's are appended to it.
    pub fn forward(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        start: i64,
        cache: Option<&mut (Tensor, Tensor)>,
    ) -> TResult<Tensor> {
        let (b, t, _) = x.size3()?;
        let split = |proj: &Linear, heads: i64| -> TResult<Tensor> {
            proj.forward(x)?
                .f_view([b, t, heads, self.head_dim])?
                .f_transpose(1, 2)
        };
        let q = rotary.apply(&split(&self.q_proj, self.heads)?, start)?;
        let mut k = rotary.apply(&split(&self.k_proj, self.kv_heads)?, start)?;
        let mut v = split(&self.v_proj, self.kv_heads)?;
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
        let y = if start == 0 {
            Tensor::f_scaled_dot_product_attention::<Tensor>(
                &q, &k, &v, None, 0.0, true, None, false,
            )?
        } else if t == 1 {
            Tensor::f_scaled_dot_product_attention::<Tensor>(
                &q, &k, &v, None, 0.0, false, None, false,
            )?
        } else {
            let rows = Tensor::f_arange_start(start, start + t, (Kind::Int64, x.device()))?
                .f_unsqueeze(1)?;
            let cols = Tensor::f_arange(start + t, (Kind::Int64, x.device()))?.f_unsqueeze(0)?;
            let mask = cols.f_le_tensor(&rows)?;
            Tensor::f_scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, None, false)?
        };
        let y = y
            .f_transpose(1, 2)?
            .f_reshape([b, t, self.heads * self.head_dim])?;
        self.o_proj.forward(&y)
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
    pub fn new(path: nn::Path, config: &ModelConfig) -> Self {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let out_std = INIT_STD / (2.0 * config.num_hidden_layers as f64).sqrt();
        Self {
            gate_proj: Linear::new(&path / "gate_proj", h, i, INIT_STD),
            up_proj: Linear::new(&path / "up_proj", h, i, INIT_STD),
            down_proj: Linear::new(&path / "down_proj", i, h, out_std),
        }
    }

    pub fn forward(&self, x: &Tensor) -> TResult<Tensor> {
        let gate = self.gate_proj.forward(x)?.f_silu()?;
        self.down_proj
            .forward(&gate.f_mul(&self.up_proj.forward(x)?)?)
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
    pub fn new(path: nn::Path, config: &ModelConfig) -> Self {
        Self {
            input_layernorm: RmsNorm::new(&path / "input_layernorm", config),
            self_attn: Attention::new(&path / "self_attn", config),
            post_attention_layernorm: RmsNorm::new(&path / "post_attention_layernorm", config),
            mlp: Mlp::new(&path / "mlp", config),
        }
    }

    pub fn forward(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        start: i64,
        cache: Option<&mut (Tensor, Tensor)>,
    ) -> TResult<Tensor> {
        let h = x.f_add(&self.self_attn.forward(
            &self.input_layernorm.forward(x)?,
            rotary,
            start,
            cache,
        )?)?;
        h.f_add(
            &self
                .mlp
                .forward(&self.post_attention_layernorm.forward(&h)?)?,
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
    pub fn new(path: &nn::Path, config: &ModelConfig) -> TResult<Self> {
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
            .map(|i| DecoderLayer::new(&model / "layers" / i, config))
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
        mut cache: Option<&mut KvCache>,
        kind: Kind,
    ) -> TResult<Tensor> {
        let (_, t) = ids.size2()?;
        if start + t > self.config.max_position_embeddings {
            return Err(TchError::Shape(format!(
                "positions up to {} exceed max_position_embeddings {}",
                start + t,
                self.config.max_position_embeddings
            )));
        }
        if let Some(cache) = cache.as_deref()
            && (cache.len != start || start + t > cache.capacity)
        {
            return Err(TchError::Shape(format!(
                "kv cache holds {} of {} positions; cannot append {t} at position {start}",
                cache.len, cache.capacity
            )));
        }
        let mut x = as_kind(
            &Tensor::f_embedding(&self.embed_tokens, ids, -1, false, false)?,
            kind,
        )?;
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = match cache.as_deref_mut() {
                Some(c) => c.layers.get_mut(i),
                None => None,
            };
            x = layer.forward(&x, &self.rotary, start, layer_cache)?;
        }
        if let Some(cache) = cache {
            cache.len = start + t;
        }
        let x = self.norm.forward(&x)?;
        match &self.lm_head {
            Some(head) => head.forward(&x),
            None => x.f_linear::<Tensor>(&as_kind(&self.embed_tokens, kind)?, None),
        }
    }
}

/// Summed cross-entropy in fp32 over targets that are not `-100`, and their count.
pub fn cross_entropy_sum(logits: &Tensor, targets: &Tensor) -> TResult<Tensor> {
    let vocab = logits.size().last().copied().unwrap_or(0);
    logits
        .f_to_kind(Kind::Float)?
        .f_reshape([-1, vocab])?
        .f_cross_entropy_loss::<Tensor>(
            &targets.f_reshape([-1])?,
            None,
            tch::Reduction::Sum,
            -100,
            0.0,
        )
}
