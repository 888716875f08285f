//! Inter-annotator agreement on nominal labels, as pure functions over `(item, annotator,
//! label)` triples: Cohen's kappa for a pair of annotators, Fleiss' kappa and Krippendorff's
//! alpha over every item that two or more annotators labelled. `None` where a statistic is
//! undefined (no items in common, or every label the same so chance agreement is 1).

use std::collections::{BTreeMap, BTreeSet};

/// One label: which annotator said what about which item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub item: i64,
    pub annotator: String,
    pub category: String,
}

/// Labels grouped by item, keeping only items with at least two labels.
fn units(labels: &[Label]) -> BTreeMap<i64, Vec<&str>> {
    let mut by_item: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for l in labels {
        by_item.entry(l.item).or_default().push(&l.category);
    }
    by_item.retain(|_, v| v.len() >= 2);
    by_item
}

/// Number of items with at least two labels.
pub fn overlapping_items(labels: &[Label]) -> usize {
    units(labels).len()
}

/// Cohen's kappa of two annotators over the items both labelled:
/// `(p_o - p_e) / (1 - p_e)`, `p_o` the share of items they agree on, `p_e` the agreement
/// expected from each one's label frequencies. Returns (items in common, p_o, kappa).
pub fn cohen_kappa(a: &[(i64, &str)], b: &[(i64, &str)]) -> (usize, Option<f64>, Option<f64>) {
    let b: BTreeMap<i64, &str> = b.iter().copied().collect();
    let pairs: Vec<(&str, &str)> = a
        .iter()
        .filter_map(|(item, x)| b.get(item).map(|y| (*x, *y)))
        .collect();
    let n = pairs.len();
    if n == 0 {
        return (0, None, None);
    }
    let nf = n as f64;
    let p_o = pairs.iter().filter(|(x, y)| x == y).count() as f64 / nf;
    let mut fa: BTreeMap<&str, f64> = BTreeMap::new();
    let mut fb: BTreeMap<&str, f64> = BTreeMap::new();
    for (x, y) in &pairs {
        *fa.entry(x).or_default() += 1.0 / nf;
        *fb.entry(y).or_default() += 1.0 / nf;
    }
    let p_e: f64 = fa
        .iter()
        .map(|(c, p)| p * fb.get(c).copied().unwrap_or(0.0))
        .sum();
    let kappa = (p_e < 1.0 - 1e-12).then(|| (p_o - p_e) / (1.0 - p_e));
    (n, Some(p_o), kappa)
}

/// Fleiss' kappa over the items with two or more labels. Items may have different numbers of
/// labels: each item's agreement is `P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1))`, `P` their
/// mean, `p_j` the share of all labels in category j and `P_e = sum_j p_j^2`; with the same
/// number of labels on every item this is exactly Fleiss (1971).
pub fn fleiss_kappa(labels: &[Label]) -> Option<f64> {
    let units = units(labels);
    if units.is_empty() {
        return None;
    }
    let mut totals: BTreeMap<&str, f64> = BTreeMap::new();
    let mut all = 0.0;
    let mut p_sum = 0.0;
    for cats in units.values() {
        let mut counts: BTreeMap<&str, f64> = BTreeMap::new();
        for c in cats {
            *counts.entry(c).or_default() += 1.0;
            *totals.entry(c).or_default() += 1.0;
        }
        let n = cats.len() as f64;
        all += n;
        p_sum += (counts.values().map(|x| x * x).sum::<f64>() - n) / (n * (n - 1.0));
    }
    let p_bar = p_sum / units.len() as f64;
    let p_e: f64 = totals.values().map(|t| (t / all) * (t / all)).sum();
    (p_e < 1.0 - 1e-12).then(|| (p_bar - p_e) / (1.0 - p_e))
}

/// Krippendorff's alpha for nominal data: `1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k}
/// n_c n_k`, with the coincidence matrix `o_ck = sum_u (ordered c-k pairs in unit u) /
/// (m_u - 1)` over units with `m_u >= 2` labels, `n_c` its row sums and `n` their total.
pub fn krippendorff_alpha(labels: &[Label]) -> Option<f64> {
    let units = units(labels);
    let mut o: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    for cats in units.values() {
        let m = cats.len() as f64;
        for (i, c) in cats.iter().enumerate() {
            for (j, k) in cats.iter().enumerate() {
                if i != j {
                    *o.entry((c, k)).or_default() += 1.0 / (m - 1.0);
                }
            }
        }
    }
    let mut n_c: BTreeMap<&str, f64> = BTreeMap::new();
    for ((c, _), v) in &o {
        *n_c.entry(c).or_default() += v;
    }
    let n: f64 = n_c.values().sum();
    let observed: f64 = o.iter().filter(|((c, k), _)| c != k).map(|(_, v)| v).sum();
    let cats: BTreeSet<&str> = n_c.keys().copied().collect();
    let mut expected = 0.0;
    for c in &cats {
        for k in &cats {
            if c != k {
                expected += n_c[c] * n_c[k];
            }
        }
    }
    (n > 1.0 && expected > 0.0).then(|| 1.0 - (n - 1.0) * observed / expected)
}

/// Cohen's kappa of every pair of annotators with at least one item in common.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct PairAgreement {
    pub annotators: [String; 2],
    pub items: usize,
    pub observed: Option<f64>,
    pub kappa: Option<f64>,
}

pub fn pairwise(labels: &[Label]) -> Vec<PairAgreement> {
    let mut by_user: BTreeMap<&str, Vec<(i64, &str)>> = BTreeMap::new();
    for l in labels {
        by_user
            .entry(&l.annotator)
            .or_default()
            .push((l.item, &l.category));
    }
    let users: Vec<&str> = by_user.keys().copied().collect();
    let mut out = Vec::new();
    for (i, a) in users.iter().enumerate() {
        for b in &users[i + 1..] {
            let (items, observed, kappa) = cohen_kappa(&by_user[a], &by_user[b]);
            if items > 0 {
                out.push(PairAgreement {
                    annotators: [a.to_string(), b.to_string()],
                    items,
                    observed,
                    kappa,
                });
            }
        }
    }
    out
}

/// Quantiles of `values` (nearest rank on the sorted values); empty input gives `None`.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    sorted.get(idx).copied()
}
