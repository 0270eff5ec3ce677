//! A randomized fault scenario, derived entirely from a seed so a failing run can be replayed:
//! how many objects, how many operator lifetimes, which faults each lifetime meets, where the
//! operator is killed, and which objects are deleted when.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A provider fault, mapped by each backend onto its own fault knobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderFault {
    /// The create takes effect, then the answer is lost (timeout or connection reset).
    LoseCreateResponse,
    /// The create takes effect, then the provider answers 5xx.
    ErrorAfterCreate,
    /// A 5xx on this operation.
    ServerError(Op),
    /// 429 with `Retry-After`.
    RateLimitedRetryAfter(Op),
    /// 429 without `Retry-After` (sim only; RunPod always sends one).
    RateLimited(Op),
    /// No capacity on create.
    Capacity,
    /// The call hangs past the client timeout (RunPod; sim answers like a lost response).
    Timeout(Op),
}

/// Provider operations the faults target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// create
    Create,
    /// observe / get
    Observe,
    /// list
    List,
    /// terminate / delete
    Terminate,
}

/// When the operator of a lifetime is killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillPoint {
    /// After this many milliseconds.
    After(u64),
    /// As soon as an object has a recorded intent and no provider id.
    IntentRecorded,
    /// As soon as the provider saw a create call.
    CreateCalled,
    /// As soon as an object has a recorded provider id.
    IdRecorded,
}

/// An API server fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiFault {
    /// The next writes to cloudresources answer 409.
    Conflicts(u32),
    /// The next writes to cloudresources answer 500.
    ServerErrors(u32),
    /// Every request is delayed by this many milliseconds.
    Latency(u64),
    /// Every watch is expired with 410 after this many milliseconds.
    ExpireWatchesAfter(u64),
}

/// One operator lifetime.
#[derive(Clone, Debug, PartialEq)]
pub struct Lifetime {
    /// Provider faults queued before the operator starts.
    pub provider_faults: Vec<ProviderFault>,
    /// API server faults.
    pub api_faults: Vec<ApiFault>,
    /// Where the operator is killed.
    pub kill: KillPoint,
    /// Extra delay after the kill point is reached, in milliseconds (lands the kill at
    /// different await points).
    pub kill_jitter_ms: u64,
    /// Index of an object deleted during this lifetime, and after how many milliseconds.
    pub delete_during: Option<(usize, u64)>,
    /// Index of an object deleted after the kill, while no operator runs.
    pub delete_while_down: Option<usize>,
}

/// A whole run.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The seed it came from.
    pub seed: u64,
    /// Objects created at the start.
    pub objects: usize,
    /// Operator lifetimes that end in a kill; a final, fault-free lifetime follows.
    pub lifetimes: Vec<Lifetime>,
}

impl Scenario {
    /// The scenario of `seed`. `timeouts` says whether the backend can hang a call.
    pub fn from_seed(seed: u64, timeouts: bool) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let objects = rng.random_range(1..=3);
        let n = rng.random_range(1..=3);
        let lifetimes = (0..n)
            .map(|_| lifetime(&mut rng, objects, timeouts))
            .collect();
        Self {
            seed,
            objects,
            lifetimes,
        }
    }

    /// Faults this scenario injects (provider, API server, kills, deletes while down).
    pub fn fault_count(&self) -> usize {
        self.lifetimes
            .iter()
            .map(|l| {
                l.provider_faults.len()
                    + l.api_faults.len()
                    + 1
                    + usize::from(l.delete_while_down.is_some())
            })
            .sum()
    }
}

fn op(rng: &mut StdRng) -> Op {
    match rng.random_range(0..4) {
        0 => Op::Create,
        1 => Op::Observe,
        2 => Op::List,
        _ => Op::Terminate,
    }
}

fn lifetime(rng: &mut StdRng, objects: usize, timeouts: bool) -> Lifetime {
    let mut provider_faults = Vec::new();
    for _ in 0..rng.random_range(0..=3) {
        let f = match rng.random_range(0..8) {
            0 | 7 => ProviderFault::LoseCreateResponse,
            1 => ProviderFault::ErrorAfterCreate,
            2 => ProviderFault::ServerError(op(rng)),
            3 => ProviderFault::RateLimitedRetryAfter(op(rng)),
            4 => ProviderFault::RateLimited(op(rng)),
            5 => ProviderFault::Capacity,
            _ if timeouts => ProviderFault::Timeout(op(rng)),
            _ => ProviderFault::LoseCreateResponse,
        };
        provider_faults.push(f);
    }
    let mut api_faults = Vec::new();
    for _ in 0..rng.random_range(0..=2) {
        let f = match rng.random_range(0..4) {
            0 => ApiFault::Conflicts(rng.random_range(1..=3)),
            1 => ApiFault::ServerErrors(rng.random_range(1..=3)),
            2 => ApiFault::Latency(rng.random_range(1..=20)),
            _ => ApiFault::ExpireWatchesAfter(rng.random_range(0..400)),
        };
        api_faults.push(f);
    }
    let kill = match rng.random_range(0..4) {
        0 => KillPoint::After(rng.random_range(0..800)),
        1 => KillPoint::IntentRecorded,
        2 => KillPoint::CreateCalled,
        _ => KillPoint::IdRecorded,
    };
    let delete_during = rng
        .random_bool(0.35)
        .then(|| (rng.random_range(0..objects), rng.random_range(0..500)));
    let delete_while_down = rng.random_bool(0.5).then(|| rng.random_range(0..objects));
    Lifetime {
        provider_faults,
        api_faults,
        kill,
        kill_jitter_ms: rng.random_range(0..40),
        delete_during,
        delete_while_down,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_replay_from_their_seed() {
        assert_eq!(Scenario::from_seed(7, true), Scenario::from_seed(7, true));
        assert!(Scenario::from_seed(7, true).fault_count() >= 1);
    }
}
