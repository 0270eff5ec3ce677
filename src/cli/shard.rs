//! `runctl shard`: which shard owns each namespace when the cluster is split into `--shards`
//! (`sharding.shards`; [`crate::runtime::shard`]). Needs no cluster.

use crate::config::MAX_SHARDS;
use crate::runtime::shard::Shard;

/// Arguments of `runctl shard`.
#[derive(Clone, Debug, clap::Args)]
pub struct ShardArgs {
    /// How many shards the namespaces are split into (sharding.shards).
    #[arg(long)]
    pub shards: u32,
    /// The namespaces to place.
    #[arg(required = true)]
    pub namespaces: Vec<String>,
}

/// One line per namespace: the namespace and its shard, tab-separated; an error for a shard
/// count outside 1 to [`MAX_SHARDS`].
pub fn render(args: &ShardArgs) -> Result<String, String> {
    if !(1..=MAX_SHARDS).contains(&args.shards) {
        return Err(format!(
            "--shards {} must be from 1 to {MAX_SHARDS}",
            args.shards
        ));
    }
    Ok(args
        .namespaces
        .iter()
        .map(|ns| format!("{ns}\t{}\n", Shard::of(ns, args.shards)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_namespace_gets_the_shard_the_operator_computes() {
        let args = ShardArgs {
            shards: 2,
            namespaces: vec!["default".into(), "ml".into()],
        };
        let text = render(&args).unwrap();
        assert_eq!(
            text,
            format!("default\t1\nml\t{}\n", Shard::of("ml", 2)),
            "{text}"
        );
        let none = ShardArgs { shards: 0, ..args };
        assert!(render(&none).unwrap_err().contains("from 1 to 64"));
    }
}
