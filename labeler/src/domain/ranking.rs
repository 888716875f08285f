//! A ranking of the k answers shown (k = 2..9): the rank of each, in the order shown, 1 the
//! best and equal ranks for ties; and the pairs it implies, which is how rankings reach DPO
//! and the reward model.

/// Fewest and most answers one ranking orders.
pub const MIN_RANKED: usize = 2;
pub const MAX_RANKED: usize = 9;

/// A checked ranking: ranks made dense (`[1, 3, 3]` becomes `[1, 2, 2]`), so the gap between
/// two answers counts the distinct ranks between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranking {
    ranks: Vec<i16>,
    pub rationale: Option<String>,
}

/// Two shown positions a ranking compares, the better (lower rank) first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankedPair {
    pub better: usize,
    pub worse: usize,
    /// Rank difference (>= 1); 0 for a tie.
    pub gap: i16,
}

impl Ranking {
    pub fn parse(
        ranks: Vec<i64>,
        rationale: Option<String>,
        rationale_required: bool,
    ) -> Result<Self, String> {
        let k = ranks.len();
        if !(MIN_RANKED..=MAX_RANKED).contains(&k) {
            return Err(format!(
                "ranking: {MIN_RANKED} to {MAX_RANKED} ranks, one per answer shown, found {k}"
            ));
        }
        if let Some((i, r)) = ranks
            .iter()
            .enumerate()
            .find(|(_, r)| !(1..=k as i64).contains(r))
        {
            return Err(format!("ranking[{i}]: rank {r} is not between 1 and {k}"));
        }
        let mut distinct: Vec<i64> = ranks.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let dense = ranks
            .iter()
            .map(|r| {
                distinct
                    .iter()
                    .position(|d| d == r)
                    .map_or(0, |p| p as i16 + 1)
            })
            .collect();
        let rationale = super::verdict::check_rationale(rationale, rationale_required)?;
        Ok(Self {
            ranks: dense,
            rationale,
        })
    }

    /// The stored form (already checked).
    pub fn from_stored(ranks: Vec<i16>) -> Self {
        Self {
            ranks,
            rationale: None,
        }
    }

    pub fn ranks(&self) -> &[i16] {
        &self.ranks
    }

    /// Every pair of shown positions exactly once (k(k-1)/2 of them), better first; ties
    /// with gap 0 in shown order.
    pub fn pairs(&self) -> Vec<RankedPair> {
        let mut out = Vec::new();
        for i in 0..self.ranks.len() {
            for j in i + 1..self.ranks.len() {
                let (ri, rj) = (self.ranks[i], self.ranks[j]);
                let (better, worse) = if rj < ri { (j, i) } else { (i, j) };
                out.push(RankedPair {
                    better,
                    worse,
                    gap: (ri - rj).abs(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_checked_and_made_dense() {
        let r = Ranking::parse(vec![1, 3, 3, 4], None, false).map(|r| r.ranks().to_vec());
        assert_eq!(r, Ok(vec![1, 2, 2, 3]));
        assert!(Ranking::parse(vec![1], None, false).is_err());
        assert!(
            Ranking::parse(vec![1, 4, 2], None, false).is_err_and(|e| e.contains("ranking[1]"))
        );
        assert!(Ranking::parse(vec![1, 2], None, true).is_err_and(|e| e.contains("rationale")));
    }

    #[test]
    fn every_pair_once_with_its_gap() {
        let r = Ranking::from_stored(vec![2, 1, 3, 1]);
        let pairs = r.pairs();
        assert_eq!(pairs.len(), 6);
        assert!(pairs.contains(&RankedPair {
            better: 1,
            worse: 0,
            gap: 1
        }));
        assert!(pairs.contains(&RankedPair {
            better: 1,
            worse: 2,
            gap: 2
        }));
        assert!(pairs.contains(&RankedPair {
            better: 1,
            worse: 3,
            gap: 0
        }));
        assert_eq!(pairs.iter().filter(|p| p.gap == 0).count(), 1);
    }
}
