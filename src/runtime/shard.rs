//! Sharding: which namespaces one operator deployment owns when the cluster is split between
//! several (`sharding.shards` in the configuration; [docs/operations.md](../../docs/operations.md)).
//!
//! A namespace belongs to exactly one shard: the first eight bytes of the SHA-256 of its name,
//! read as a big-endian integer, modulo the number of shards. The rule is stable (no
//! process-seeded hash), so every replica of every shard, and a human with `sha256sum`, computes
//! the same owner. A shard's controllers drop the other shards' objects from their watches
//! before they are cached, so each shard holds only its own objects in memory; each shard has a
//! Lease of its own, and the cluster-wide duties (the MachineClass controller, the orphan reaper)
//! run in shard 0 only.

use sha2::{Digest, Sha256};

/// One shard of `count`: this deployment's `index`, counted from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Default for Shard {
    /// The whole cluster: one shard.
    fn default() -> Self {
        Self::WHOLE
    }
}

impl Shard {
    /// The whole cluster: one shard, owning every namespace.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`; `None` unless `index < count`.
    pub fn new(index: u32, count: u32) -> Option<Self> {
        (index < count).then_some(Self { index, count })
    }

    /// This shard's index, from 0.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// How many shards the cluster is split into.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether the cluster is split at all.
    pub fn is_split(&self) -> bool {
        self.count > 1
    }

    /// Whether the cluster-wide duties (MachineClasses, the orphan reaper) are this shard's: they
    /// run in shard 0 only.
    pub fn runs_cluster_duties(&self) -> bool {
        self.index == 0
    }

    /// The shard, of `count`, that owns `namespace`.
    pub fn of(namespace: &str, count: u32) -> u32 {
        let digest = Sha256::digest(namespace.as_bytes());
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(head) % u64::from(count.max(1))) as u32
    }

    /// Whether `namespace` is this shard's.
    pub fn owns(&self, namespace: &str) -> bool {
        !self.is_split() || Self::of(namespace, self.count) == self.index
    }

    /// Whether a namespaced object (by its namespace) is this shard's; objects without a
    /// namespace are shard 0's.
    pub fn owns_object<K: kube::Resource>(&self, obj: &K) -> bool {
        match obj.meta().namespace.as_deref() {
            Some(ns) => self.owns(ns),
            None => self.runs_cluster_duties(),
        }
    }

    /// The Lease this shard's replicas elect their leader with: `base` for the whole cluster,
    /// `base-shard-<index>` for a shard.
    pub fn lease_name(&self, base: &str) -> String {
        if self.is_split() {
            format!("{base}-shard-{}", self.index)
        } else {
            base.to_string()
        }
    }

    /// `template` with every `{shard}` replaced by this shard's index (a callback URL that
    /// reaches this shard's replicas).
    pub fn fill(&self, template: &str) -> String {
        template.replace(SHARD_PLACEHOLDER, &self.index.to_string())
    }
}

/// The placeholder a per-shard setting (the callback URL) carries for the shard's index.
pub const SHARD_PLACEHOLDER: &str = "{shard}";

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shard_owns_everything_and_keeps_the_lease_name() {
        let s = Shard::WHOLE;
        assert!(s.owns("ml") && s.owns("default"));
        assert!(s.runs_cluster_duties());
        assert_eq!(s.lease_name("runctl-leader"), "runctl-leader");
    }

    #[test]
    fn every_namespace_has_exactly_one_owner() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3).unwrap()).collect();
        let mut per_shard = [0usize; 3];
        for n in 0..300 {
            let ns = format!("team-{n}");
            let owners: Vec<_> = shards.iter().filter(|s| s.owns(&ns)).collect();
            assert_eq!(owners.len(), 1, "{ns}");
            per_shard[owners[0].index() as usize] += 1;
        }
        assert!(per_shard.iter().all(|n| *n > 60), "{per_shard:?}");
    }

    #[test]
    fn the_owner_is_the_documented_sha256_rule() {
        // printf default | sha256sum: 37a8eec1ce19687d...; 0x37a8eec1ce19687d % 2 = 1.
        assert_eq!(Shard::of("default", 2), 1);
        assert_eq!(Shard::of("default", 1), 0);
        let head = u64::from_str_radix("37a8eec1ce19687d", 16).unwrap();
        assert_eq!(Shard::of("default", 7), (head % 7) as u32);
    }

    #[test]
    fn an_index_outside_the_count_is_refused() {
        assert!(Shard::new(2, 2).is_none());
        assert!(Shard::new(0, 0).is_none());
        assert_eq!(Shard::new(1, 2).unwrap().to_string(), "1 of 2");
    }

    #[test]
    fn a_split_shard_has_its_own_lease_and_callback_url() {
        let s = Shard::new(1, 4).unwrap();
        assert_eq!(s.lease_name("runctl-leader"), "runctl-leader-shard-1");
        assert_eq!(
            s.fill("https://runctl-{shard}.example.com"),
            "https://runctl-1.example.com"
        );
        assert!(!s.runs_cluster_duties());
    }
}
