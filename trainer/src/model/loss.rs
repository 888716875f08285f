//! The language-modelling losses, in fp32 whatever the compute kind: cross-entropy over the
//! full logits; chunked forms that never hold the `[tokens, vocab]` logits whole (on a small
//! model with a large vocabulary the output layer is most of a step's memory traffic): the
//! cross-entropy with its gradient for pretraining and SFT, and label log-probs with a
//! surrogate for their gradient for DPO, KTO and GRPO; fp32 or bf16 compute.

use tch::{Kind, TchError, Tensor};

type TResult<T> = Result<T, TchError>;

/// Rows of the output projection handled at a time by [`chunked_cross_entropy`] on the CPU,
/// where a chunk's logits stay in cache.
const LOSS_CHUNK_ROWS: i64 = 64;
/// fp32 logits of a chunk on a GPU, in elements (256 MiB): rows enough to keep the matmuls
/// large, few enough that the chunk is a small share of the full logits.
const GPU_CHUNK_ELEMENTS: i64 = 1 << 26;

/// Rows a chunk holds for a `vocab`-wide output on `device`.
fn chunk_rows(vocab: i64, device: tch::Device) -> i64 {
    if device.is_cuda() {
        (GPU_CHUNK_ELEMENTS / vocab.max(1)).max(LOSS_CHUNK_ROWS)
    } else {
        LOSS_CHUNK_ROWS
    }
}

/// Summed cross-entropy (fp32) of the logits `hidden @ weightᵀ` against `targets` (`-100`
/// ignored), worked out a chunk of rows at a time together with its gradient (softmax minus
/// one-hot), so the `[rows, vocab]` logits never exist whole and nothing of them is kept for
/// backward: with a large vocabulary and a small model this is most of a training step's
/// memory traffic (the output layer of the tiny preset went from 167 to 85 ms per 512 tokens).
/// `weight` is fp32 (master weights); `hidden` is fp32 or the compute kind (bf16), in which
/// the matmuls run, as the full path's do, while the logits' normalization and the weight's
/// gradient accumulate in fp32. Returns the loss sum (no graph) and a surrogate scalar whose
/// backward adds `scale` times the loss's gradient to everything `hidden` depends on and to
/// `weight`. Same loss and gradients as [`cross_entropy_sum`] over `hidden @ weightᵀ` in
/// `hidden`'s kind, up to float rounding (tested, fp32 and bf16).
pub fn chunked_cross_entropy(
    hidden: &Tensor,
    weight: &Tensor,
    targets: &Tensor,
    scale: f64,
) -> TResult<(Tensor, Tensor)> {
    let width = hidden.size().last().copied().unwrap_or(0);
    let rows = hidden.f_reshape([-1, width])?;
    let targets = targets.f_reshape([-1])?;
    let mut loss = Tensor::f_zeros([], (Kind::Float, rows.device()))?;
    let keep: AdjustLogits<'_> = &|logits, _, _| Ok(logits);
    let surrogate = chunked_backprop(&rows, weight, 1.0, keep, |start, len, logits| {
        let tc = targets.f_narrow(0, start, len)?;
        let valid = tc.f_ne(-100)?.f_to_kind(Kind::Float)?.f_unsqueeze(1)?;
        let index = tc.f_clamp_min(0)?.f_unsqueeze(1)?;
        let lse = logits.f_logsumexp([-1], true)?;
        let picked = logits.f_gather(1, &index, false)?;
        loss = loss.f_add(&lse.f_sub(&picked)?.f_mul(&valid)?.f_sum(Kind::Float)?)?;
        // The gradient of the summed loss w.r.t. the logits: softmax - one-hot, per row.
        let _ = logits.f_sub_(&lse)?.f_exp_()?;
        let _ = logits.f_scatter_add_(1, &index, &valid.f_neg()?)?;
        let _ = logits.f_mul_(&valid.f_mul_scalar(scale)?)?;
        Ok(())
    })?;
    Ok((loss, surrogate))
}

/// The chunked backward both chunked forms share: over the chunks of `rows @ weightᵀ`
/// (adjusted, divided by `temperature`, fp32), `to_grad` turns each chunk's logits in place
/// into the loss's gradient with respect to them; the rows' gradient (in their kind) and the
/// weight's (fp32, none for a frozen weight, which saves a `[vocab, hidden]` buffer and a
/// matmul a chunk) are accumulated from them. Returns the surrogate scalar whose backward
/// hands those gradients to everything `rows` depends on and to `weight`.
fn chunked_backprop(
    rows: &Tensor,
    weight: &Tensor,
    temperature: f64,
    adjust: AdjustLogits<'_>,
    mut to_grad: impl FnMut(i64, i64, &mut Tensor) -> TResult<()>,
) -> TResult<Tensor> {
    let h = rows.f_detach()?;
    let compute = h.kind();
    let grad_h = h.f_zeros_like()?;
    let mut grad_w = if weight.requires_grad() {
        Some(Tensor::f_zeros(
            weight.size(),
            (Kind::Float, weight.device()),
        )?)
    } else {
        None
    };
    tch::no_grad(|| {
        let wc = weight_in(&weight.f_detach()?, compute)?;
        for_each_chunk(
            &h,
            &wc,
            temperature,
            adjust,
            |start, len, hc, mut logits| {
                to_grad(start, len, &mut logits)?;
                grad_h
                    .f_narrow(0, start, len)?
                    .f_copy_(&weight_in(&logits, compute)?.f_matmul(&wc)?)?;
                if let Some(g) = &mut grad_w {
                    let _ = g.f_addmm_(&logits.f_tr()?, &weight_in(hc, Kind::Float)?)?;
                }
                Ok(())
            },
        )
    })?;
    let surrogate = rows.f_mul(&grad_h)?.f_sum(Kind::Float)?;
    match grad_w {
        Some(g) => surrogate.f_add(
            &weight
                .f_mul(&g.f_to_kind(weight.kind())?)?
                .f_sum(Kind::Float)?,
        ),
        None => Ok(surrogate),
    }
}

/// The flat positions whose target is not `-100` (ascending) and those targets, both `[n]`
/// int64, from `targets` of any shape: where the losses take logits.
pub fn labelled_cells(targets: &Tensor) -> TResult<(Tensor, Tensor)> {
    let targets = targets.f_reshape([-1])?;
    let cells = targets.f_ne(-100)?.f_nonzero()?.f_reshape([-1])?;
    let picked = targets.f_index_select(0, &cells)?;
    Ok((cells, picked))
}

/// The rows `cells` (flat positions over the leading dimensions) of `hidden`
/// (`[.., hidden]`), as `[cells, hidden]`.
pub fn rows_at(hidden: &Tensor, cells: &Tensor) -> TResult<Tensor> {
    let width = hidden.size().last().copied().unwrap_or(0);
    hidden.f_reshape([-1, width])?.f_index_select(0, cells)
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

/// What a chunk of logits goes through before the log-softmax: `(logits, start, len)` of
/// rows `start..start + len` (fp32) to the logits used (e.g. with a sampler's masked ids at
/// -inf).
pub type AdjustLogits<'a> = &'a dyn Fn(Tensor, i64, i64) -> TResult<Tensor>;

/// Runs `each(start, len, rows chunk, adjusted fp32 logits / temperature)` over the chunks of
/// `rows @ weightᵀ`, without a graph; `wc` is the weight in the rows' kind.
fn for_each_chunk(
    rows: &Tensor,
    wc: &Tensor,
    temperature: f64,
    adjust: AdjustLogits<'_>,
    mut each: impl FnMut(i64, i64, &Tensor, Tensor) -> TResult<()>,
) -> TResult<()> {
    let n = rows.size()[0];
    let chunk = chunk_rows(wc.size()[0], rows.device());
    let wt = wc.f_tr()?;
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let hc = rows.f_narrow(0, start, len)?;
        let mut logits = adjust(hc.f_matmul(&wt)?.f_to_kind(Kind::Float)?, start, len)?;
        if temperature != 1.0 {
            logits = logits.f_div_scalar(temperature)?;
        }
        each(start, len, &hc, logits)?;
        start += len;
    }
    Ok(())
}

/// `weight` in `kind` (the full path's linear layer takes it so).
fn weight_in(weight: &Tensor, kind: Kind) -> TResult<Tensor> {
    if weight.kind() == kind {
        Ok(weight.shallow_clone())
    } else {
        weight.f_to_kind(kind)
    }
}

/// Log-probabilities `[rows]` (fp32, no graph) of `labels` (`[rows]`, no `-100`) under
/// `softmax(adjust(rows @ weightᵀ) / temperature)`, a chunk of rows at a time, so the
/// `[rows, vocab]` logits never exist whole. With [`chunked_label_logps_surrogate`] for the
/// gradient, the log-probs of a loss that is not a plain sum of them (DPO, GRPO).
pub fn chunked_label_logps(
    rows: &Tensor,
    weight: &Tensor,
    labels: &Tensor,
    temperature: f64,
    adjust: AdjustLogits<'_>,
) -> TResult<Tensor> {
    let rows = rows.f_detach()?;
    let out = Tensor::f_zeros([rows.size()[0]], (Kind::Float, rows.device()))?;
    tch::no_grad(|| {
        let wc = weight_in(&weight.f_detach()?, rows.kind())?;
        for_each_chunk(&rows, &wc, temperature, adjust, |start, len, _, logits| {
            let index = labels.f_narrow(0, start, len)?.f_unsqueeze(1)?;
            let lse = logits.f_logsumexp([-1], true)?;
            let picked = logits.f_gather(1, &index, false)?;
            out.f_narrow(0, start, len)?
                .f_copy_(&picked.f_sub(&lse)?.f_squeeze_dim(1)?)?;
            Ok(())
        })
    })?;
    Ok(out)
}

/// A surrogate scalar whose backward adds to everything `rows` depends on, and to `weight`
/// when it requires a gradient, the gradient of `Σ upstream · logps`, where `logps` are
/// [`chunked_label_logps`] of the same arguments and `upstream` (`[rows]`) the loss's
/// gradient with respect to them. Each chunk's logits are computed again (one more matmul
/// of the output layer) and the gradient `(one-hot - softmax) / temperature` is formed in
/// place; masked ids (at -inf) get none. Same gradients as autograd through the full logits
/// up to float rounding (tested).
pub fn chunked_label_logps_surrogate(
    rows: &Tensor,
    weight: &Tensor,
    labels: &Tensor,
    temperature: f64,
    adjust: AdjustLogits<'_>,
    upstream: &Tensor,
) -> TResult<Tensor> {
    chunked_backprop(rows, weight, temperature, adjust, |start, len, logits| {
        let index = labels.f_narrow(0, start, len)?.f_unsqueeze(1)?;
        let g = upstream
            .f_narrow(0, start, len)?
            .f_unsqueeze(1)?
            .f_div_scalar(temperature)?;
        let lse = logits.f_logsumexp([-1], true)?;
        // -softmax, then + one-hot at the label, times the upstream gradient / T.
        let _ = logits.f_sub_(&lse)?.f_exp_()?.f_neg_()?;
        let ones = Tensor::f_ones([len, 1], (Kind::Float, logits.device()))?;
        let _ = logits.f_scatter_add_(1, &index, &ones)?;
        let _ = logits.f_mul_(&g)?;
        Ok(())
    })
}
