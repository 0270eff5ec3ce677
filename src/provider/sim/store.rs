//! The simulated cloud's machine records and their indexes (by id, by owner key, by
//! installation and region, by owner, by machine type), so that create, observe, terminate and
//! the capacity check cost no more than the machines they touch, and a list costs one pass over
//! the installation's machines.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::provider::identity::{TAG_ATTEMPT, TAG_INSTALLATION, TAG_OWNER_UID};
use crate::provider::{Machine, ResourceState};

use super::clock::{SimClock, SimMillis};
use super::timeline::{self, End, Phase, Segment, Status, WorkloadRun};

/// The prefix of every simulated machine id.
pub const ID_PREFIX: &str = "sim-";

/// What identifies one create attempt in one region: installation, region, owner UID, attempt.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OwnerKey {
    /// Installation.
    pub installation: String,
    /// Region.
    pub region: String,
    /// Owner UID.
    pub uid: String,
    /// Attempt.
    pub attempt: u32,
}

/// One simulated machine.
#[derive(Clone, Debug)]
pub struct Record {
    /// Sequence number; the id is `sim-<num>`.
    pub num: u64,
    /// Deterministic name.
    pub name: String,
    /// Installation tag.
    pub installation: String,
    /// Region.
    pub region: String,
    /// Owner UID tag.
    pub owner_uid: Option<String>,
    /// Attempt tag.
    pub attempt: Option<u32>,
    /// Every tag, ownership tags included.
    pub tags: BTreeMap<String, String>,
    /// Machine type as rented.
    pub machine_type: String,
    /// Spot machine.
    pub spot: bool,
    /// Price per hour as rented.
    pub price_per_hour: f64,
    /// Create instant.
    pub created: SimMillis,
    /// The workload's own end, if timed.
    pub run: Option<WorkloadRun>,
    /// The workload as the machine received it (env values included, as a real machine has
    /// them); Debug redacts the values.
    pub workload: Option<crate::provider::Workload>,
    /// Made by `insert_foreign`, not by a create call.
    pub foreign: bool,
    /// Phases in order; never empty.
    pub segments: Vec<Segment>,
}

impl Record {
    /// The machine id.
    pub fn id(&self) -> String {
        format!("{ID_PREFIX}{}", self.num)
    }

    /// The latest phase. Records are made with one segment and never lose one; the fallback
    /// only keeps this total.
    pub fn current(&self) -> Segment {
        let fallback = Segment {
            at: self.created,
            phase: Phase::Ended(End::provider_failure()),
        };
        self.segments.last().copied().unwrap_or(fallback)
    }

    /// State at `now`.
    pub fn status(&self, now: SimMillis) -> Status {
        timeline::status_at(self.current(), now)
    }

    /// True when the machine has ended and `retain_ms` has passed since.
    pub fn expired(&self, now: SimMillis, retain_ms: u64) -> bool {
        let s = self.status(now);
        s.state.is_final() && now.saturating_sub(s.since) >= retain_ms
    }

    /// The key that finds this machine by owner, if it carries one.
    pub fn owner_key(&self) -> Option<OwnerKey> {
        Some(OwnerKey {
            installation: self.installation.clone(),
            region: self.region.clone(),
            uid: self.owner_uid.clone()?,
            attempt: self.attempt?,
        })
    }

    /// The machine as the provider reports it at `now`.
    pub fn to_machine(&self, now: SimMillis, clock: &SimClock) -> Machine {
        let s = self.status(now);
        let mut m = Machine::new(self.id(), s.state, s.reason);
        m.name = Some(self.name.clone());
        m.owner_uid = self.owner_uid.clone();
        m.attempt = self.attempt;
        m.message = Some(match s.exit_code {
            Some(code) => format!("sim: workload exited with code {code}"),
            None => format!("sim: {}", s.reason),
        });
        m.machine_type = Some(self.machine_type.clone());
        if s.state == ResourceState::Running {
            m.public_address = Some(format!("{}.{}.sim.invalid", self.id(), self.region));
            // A private network per region: 10.x.y.z from the machine's number.
            m.private_address = Some(format!(
                "10.{}.{}.{}",
                (self.num >> 16) & 0xff,
                (self.num >> 8) & 0xff,
                self.num & 0xff
            ));
        }
        m.launch_time = Some(clock.timestamp(self.created));
        m.price_per_hour = Some(self.price_per_hour);
        m.exit_code = s.exit_code;
        m.spot = self.spot;
        m
    }

    /// Builds the ownership tags onto `user` tags (ownership tags win).
    pub fn tags_with_owner(
        user: &BTreeMap<String, String>,
        installation: &str,
        uid: Option<&str>,
        attempt: Option<u32>,
    ) -> BTreeMap<String, String> {
        let mut tags = user.clone();
        tags.insert(TAG_INSTALLATION.into(), installation.into());
        if let Some(uid) = uid {
            tags.insert(TAG_OWNER_UID.into(), uid.into());
        }
        if let Some(a) = attempt {
            tags.insert(TAG_ATTEMPT.into(), a.to_string());
        }
        tags
    }
}

/// Parses a machine id into its sequence number.
pub fn parse_id(id: &str) -> Option<u64> {
    id.strip_prefix(ID_PREFIX)?.parse().ok()
}

/// Every machine, with its indexes.
#[derive(Debug, Default)]
pub struct Store {
    next: u64,
    machines: HashMap<u64, Record>,
    by_key: HashMap<OwnerKey, u64>,
    by_scope: HashMap<(String, String), BTreeSet<u64>>,
    by_owner: HashMap<String, BTreeSet<u64>>,
    /// Machines by type that were not yet seen ended (an ended machine never runs again, so
    /// counting drops it for good and a capacity check costs the live machines only).
    unended_by_type: HashMap<String, BTreeSet<u64>>,
}

impl Store {
    /// The sequence number the next machine gets.
    pub fn next_num(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Adds a machine to the store and its indexes. A machine whose owner key is taken is still
    /// stored but found by id and listing only.
    pub fn insert(&mut self, rec: Record) {
        let num = rec.num;
        if let Some(k) = rec.owner_key() {
            self.by_key.entry(k).or_insert(num);
        }
        self.by_scope
            .entry((rec.installation.clone(), rec.region.clone()))
            .or_default()
            .insert(num);
        if let Some(uid) = &rec.owner_uid {
            self.by_owner.entry(uid.clone()).or_default().insert(num);
        }
        self.unended_by_type
            .entry(rec.machine_type.clone())
            .or_default()
            .insert(num);
        self.machines.insert(num, rec);
    }

    /// Removes a machine and its index entries.
    pub fn remove(&mut self, num: u64) -> Option<Record> {
        let rec = self.machines.remove(&num)?;
        if let Some(k) = rec.owner_key()
            && self.by_key.get(&k) == Some(&num)
        {
            self.by_key.remove(&k);
        }
        remove_from(
            &mut self.by_scope,
            &(rec.installation.clone(), rec.region.clone()),
            num,
        );
        if let Some(uid) = &rec.owner_uid {
            remove_from(&mut self.by_owner, uid, num);
        }
        remove_from(&mut self.unended_by_type, &rec.machine_type, num);
        Some(rec)
    }

    /// The machine `num` unless it has expired (an expired one is forgotten).
    pub fn get_mut(&mut self, num: u64, now: SimMillis, retain_ms: u64) -> Option<&mut Record> {
        if self.machines.get(&num)?.expired(now, retain_ms) {
            self.remove(num);
            return None;
        }
        self.machines.get_mut(&num)
    }

    /// The machine of an owner key, unless expired.
    pub fn by_key(
        &mut self,
        key: &OwnerKey,
        now: SimMillis,
        retain_ms: u64,
    ) -> Option<&mut Record> {
        let num = *self.by_key.get(key)?;
        self.get_mut(num, now, retain_ms)
    }

    /// The machines of an installation in a region, oldest first, forgetting expired ones.
    pub fn scope(
        &mut self,
        installation: &str,
        region: &str,
        now: SimMillis,
        retain_ms: u64,
    ) -> Vec<&Record> {
        let scope = (installation.to_string(), region.to_string());
        let nums: Vec<u64> = self
            .by_scope
            .get(&scope)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let (keep, gone): (Vec<u64>, Vec<u64>) = nums.into_iter().partition(|n| {
            self.machines
                .get(n)
                .is_some_and(|r| !r.expired(now, retain_ms))
        });
        for n in gone {
            self.remove(n);
        }
        keep.iter().filter_map(|n| self.machines.get(n)).collect()
    }

    /// Machines of `machine_type` still billing at `now`.
    pub fn live_of_type(&mut self, machine_type: &str, now: SimMillis) -> usize {
        let Some(nums) = self.unended_by_type.get_mut(machine_type) else {
            return 0;
        };
        let machines = &self.machines;
        nums.retain(|n| {
            machines
                .get(n)
                .is_some_and(|r| !r.status(now).state.is_final())
        });
        nums.len()
    }

    /// Machines of owner `uid` still billing at `now`.
    pub fn live_of_owner(&self, uid: &str, now: SimMillis) -> usize {
        self.by_owner
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|n| self.machines.get(n))
            .filter(|r| !r.status(now).state.is_final())
            .count()
    }

    /// Forgets every expired machine.
    pub fn prune(&mut self, now: SimMillis, retain_ms: u64) {
        let gone: Vec<u64> = self
            .machines
            .values()
            .filter(|r| r.expired(now, retain_ms))
            .map(|r| r.num)
            .collect();
        for n in gone {
            self.remove(n);
        }
    }

    /// Every machine, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Record> {
        self.machines.values()
    }

    /// Every record, oldest first.
    pub fn all(&self) -> Vec<&Record> {
        let mut v: Vec<&Record> = self.machines.values().collect();
        v.sort_by_key(|r| r.num);
        v
    }
}

fn remove_from<K: std::hash::Hash + Eq>(index: &mut HashMap<K, BTreeSet<u64>>, key: &K, num: u64) {
    if let Some(set) = index.get_mut(key) {
        set.remove(&num);
        if set.is_empty() {
            index.remove(key);
        }
    }
}
