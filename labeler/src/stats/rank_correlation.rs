//! Agreement between rankings: Kendall's tau-b of two annotators' ranks of the same answers
//! (ties allowed), and its mean over every pair of annotators on every item.

use std::collections::BTreeMap;

/// Kendall's tau-b of two rank vectors over the same answers (`None` when the lengths
/// differ or either ranks everything equal, where it is undefined). 1: the same order, -1:
/// reversed, 0: unrelated.
pub fn kendall_tau_b(x: &[i16], y: &[i16]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    let (mut concordant, mut discordant, mut tied_x, mut tied_y, mut pairs) =
        (0i64, 0i64, 0i64, 0i64, 0i64);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            pairs += 1;
            let dx = (x[i] - x[j]).signum();
            let dy = (y[i] - y[j]).signum();
            tied_x += i64::from(dx == 0);
            tied_y += i64::from(dy == 0);
            match dx * dy {
                1 => concordant += 1,
                -1 => discordant += 1,
                _ => {}
            }
        }
    }
    let denominator = (((pairs - tied_x) * (pairs - tied_y)) as f64).sqrt();
    (denominator > 0.0).then(|| (concordant - discordant) as f64 / denominator)
}

/// One annotator's ranking of an item: rank by candidate index (the shown order differs
/// between annotators, so ranks are compared per candidate).
#[derive(Debug, Clone)]
pub struct ItemRanking {
    pub item: i64,
    pub annotator: String,
    pub rank_of: BTreeMap<i16, i16>,
}

/// The mean tau-b over every pair of annotators on every item both ranked, and how many
/// such comparisons there were (`None` mean when there were none).
pub fn mean_pairwise_tau(rankings: &[ItemRanking]) -> (usize, Option<f64>) {
    let mut by_item: BTreeMap<i64, Vec<&ItemRanking>> = BTreeMap::new();
    for r in rankings {
        by_item.entry(r.item).or_default().push(r);
    }
    let (mut n, mut sum) = (0usize, 0.0);
    for list in by_item.values() {
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                let common: Vec<i16> = a
                    .rank_of
                    .keys()
                    .filter(|k| b.rank_of.contains_key(k))
                    .copied()
                    .collect();
                let x: Vec<i16> = common.iter().map(|k| a.rank_of[k]).collect();
                let y: Vec<i16> = common.iter().map(|k| b.rank_of[k]).collect();
                if let Some(tau) = kendall_tau_b(&x, &y) {
                    n += 1;
                    sum += tau;
                }
            }
        }
    }
    (n, (n > 0).then(|| sum / n as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tau_b_is_one_reversed_minus_one_and_handles_ties() {
        assert_eq!(kendall_tau_b(&[1, 2, 3], &[1, 2, 3]), Some(1.0));
        assert_eq!(kendall_tau_b(&[1, 2, 3], &[3, 2, 1]), Some(-1.0));
        assert_eq!(kendall_tau_b(&[1, 1], &[1, 2]), None);
        // x = (1,2,2), y = (1,2,3): C = 2, D = 0, pairs 3, tied in x 1: 2 / sqrt(2 * 3).
        let tau = kendall_tau_b(&[1, 2, 2], &[1, 2, 3]).unwrap_or(f64::NAN);
        assert!((tau - 2.0 / 6f64.sqrt()).abs() < 1e-12);
    }
}
