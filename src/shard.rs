//! Sharding suppliers across exporter replicas (`--shard.index` / `--shard.count`).
//!
//! A supplier belongs to shard `hashmod(name) % count`, computed exactly as
//! Prometheus's `hashmod` relabel action does (MD5 of the value, last eight
//! bytes as a big-endian u64), so relabelling rules and the exporter agree on
//! who polls what. Every supplier is polled by exactly one replica.

use md5::{Digest, Md5};

/// Which replica this is, of how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

/// Why `--shard.index` / `--shard.count` do not name a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("--shard.count must be at least 1")]
    NoShards,
    #[error("--shard.index must be below --shard.count ({count}), got {index}")]
    IndexOutOfRange { index: u64, count: u64 },
}

impl Shard {
    pub fn new(index: u64, count: u64) -> Result<Shard, ShardError> {
        if count == 0 {
            return Err(ShardError::NoShards);
        }
        if index >= count {
            return Err(ShardError::IndexOutOfRange { index, count });
        }
        Ok(Shard { index, count })
    }

    /// Whether this replica polls the supplier called `name`.
    pub fn owns(&self, name: &str) -> bool {
        hashmod(name, self.count) == self.index
    }
}

/// Prometheus's `hashmod`: `md5(value)[8..16]` as big-endian u64, modulo `modulus`.
pub fn hashmod(value: &str, modulus: u64) -> u64 {
    let digest = Md5::digest(value.as_bytes());
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&digest[8..16]);
    u64::from_be_bytes(tail) % modulus
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_prometheus_hashmod() {
        // python3: int.from_bytes(hashlib.md5(b"foxreload").digest()[8:], "big")
        assert_eq!(hashmod("foxreload", u64::MAX), 8_868_066_422_720_254_896);
        assert_eq!(hashmod("novasend", u64::MAX), 795_459_086_413_750_131);
        assert_eq!(hashmod("vai247", 3), 1);
        assert_eq!(hashmod("supplier-0", 3), 2);
    }

    #[test]
    fn shards_partition_the_suppliers() {
        let names: Vec<String> = (0..1000).map(|i| format!("supplier-{i}")).collect();
        for count in 1..=5 {
            let shards: Vec<Shard> = (0..count).map(|i| Shard::new(i, count).unwrap()).collect();
            for name in &names {
                assert_eq!(shards.iter().filter(|s| s.owns(name)).count(), 1, "{name} with {count} shards");
            }
            // Roughly even spread.
            for s in &shards {
                let owned = names.iter().filter(|n| s.owns(n)).count();
                assert!(owned > 1000 / count as usize / 2, "shard {s:?} owns only {owned}");
            }
        }
        assert_eq!(Shard::new(2, 2).unwrap_err().to_string(), "--shard.index must be below --shard.count (2), got 2");
        assert_eq!(Shard::new(0, 0).unwrap_err(), ShardError::NoShards);
    }
}
