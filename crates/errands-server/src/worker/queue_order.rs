//! The order in which a worker's queues are tried for each claim.

use std::collections::BTreeMap;

use rand::Rng;

/// A worker's queues: tried in a fixed order, or shuffled by weight on every claim so a busy
/// queue cannot starve the others.
#[derive(Clone, Debug, PartialEq)]
pub enum QueueOrder {
    /// Always the given order.
    Strict(Vec<String>),
    /// Weighted random order; queues without a weight count as weight 1.
    Weighted(Vec<(String, u32)>),
}

impl QueueOrder {
    /// Builds the order a `hello` asked for.
    pub fn new(queues: Vec<String>, weights: Option<BTreeMap<String, u32>>) -> Self {
        match weights {
            None => QueueOrder::Strict(queues),
            Some(weights) => QueueOrder::Weighted(
                queues
                    .into_iter()
                    .map(|q| {
                        let weight = weights.get(&q).copied().unwrap_or(1);
                        (q, weight)
                    })
                    .collect(),
            ),
        }
    }

    /// Every queue name, in declaration order.
    pub fn names(&self) -> Vec<String> {
        match self {
            QueueOrder::Strict(queues) => queues.clone(),
            QueueOrder::Weighted(queues) => queues.iter().map(|(q, _)| q.clone()).collect(),
        }
    }

    /// The order to try for the next claim.
    pub fn next(&self, rng: &mut impl Rng) -> Vec<String> {
        match self {
            QueueOrder::Strict(queues) => queues.clone(),
            QueueOrder::Weighted(queues) => {
                // Weighted sampling without replacement: sort by u^(1/w), largest first.
                let mut keyed: Vec<(f64, &String)> = queues
                    .iter()
                    .filter(|(_, weight)| *weight > 0)
                    .map(|(q, weight)| (rng.random::<f64>().powf(1.0 / f64::from(*weight)), q))
                    .collect();
                keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
                keyed.into_iter().map(|(_, q)| q.clone()).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn strict_order_never_changes() {
        let order = QueueOrder::new(vec!["a".into(), "b".into()], None);
        assert_eq!(order.next(&mut StdRng::seed_from_u64(1)), ["a", "b"]);
    }

    #[test]
    fn weights_set_how_often_a_queue_comes_first() {
        let weights = BTreeMap::from([("a".to_owned(), 3), ("b".to_owned(), 1)]);
        let order = QueueOrder::new(vec!["a".into(), "b".into()], Some(weights));
        let mut rng = StdRng::seed_from_u64(42);
        let a_first = (0..10_000)
            .filter(|_| order.next(&mut rng)[0] == "a")
            .count();
        // Weight 3 against 1: "a" leads three times in four.
        assert!((7_000..8_000).contains(&a_first), "a first {a_first} times");
    }

    #[test]
    fn zero_weight_queues_are_skipped() {
        let weights = BTreeMap::from([("a".to_owned(), 0)]);
        let order = QueueOrder::new(vec!["a".into(), "b".into()], Some(weights));
        assert_eq!(order.next(&mut StdRng::seed_from_u64(1)), ["b"]);
    }
}
