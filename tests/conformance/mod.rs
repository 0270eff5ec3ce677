//! The provider conformance suite: one set of checks, generic over the provider trait, run
//! against every provider through a [`Harness`] that knows how to drive its backend (the
//! simulator, moto behind the fault proxy, or a stand-in server).
//!
//! Use from a test file with `#[path = "conformance/mod.rs"] mod conformance;`.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use runctl::provider::{
    ErrorClass, Machine, MachineSpec, Provider, ProviderError, ResourceKey, ResourceState,
    Termination,
};

/// A fault the backend injects into its next create call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No capacity for the requested machine.
    Capacity,
    /// Throttled (429 / RequestLimitExceeded).
    RateLimit,
    /// A 5xx answer.
    ServerError,
    /// Credentials rejected.
    Unauthorized,
    /// The machine is created but the response never arrives (timeout / dropped connection).
    LoseCreateResponse,
}

/// A provider-side event the backend makes happen to an existing machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drive {
    /// Finish booting.
    Running,
    /// Stopped outside runctl.
    Stopped,
    /// Spot capacity reclaimed.
    Interrupted,
    /// The workload exited 0.
    ExitSuccess,
    /// The workload exited with this code.
    ExitFailure(i32),
    /// The provider failed the machine.
    ProviderFailure,
    /// Deleted outside runctl.
    Vanish,
}

/// The installation every check's keys belong to: a harness builds its provider for it, so that
/// `list` returns the machines the checks create.
pub const INSTALLATION: &str = "conformance";

/// What a backend offers the suite.
#[async_trait]
pub trait Harness: Send + Sync {
    /// Provider under test, configured against the backend for installation [`INSTALLATION`].
    fn provider(&self) -> Arc<dyn Provider>;
    /// A valid machine spec for this provider.
    fn spec(&self) -> MachineSpec;
    /// Number of billable (not terminated) machines the backend holds for owner `uid`,
    /// read from the backend itself, not through the provider.
    async fn live_machines(&self, uid: &str) -> usize;
    /// Makes the next create call fail with `fault`; false when the backend cannot.
    async fn inject(&self, fault: Fault) -> bool;
    /// Makes `event` happen to machine `id`; false when the backend cannot.
    async fn drive(&self, id: &str, event: Drive) -> bool;
    /// The normalized state (and reason) the provider must report after `event`.
    fn expected(&self, event: Drive) -> Option<(ResourceState, &'static str)>;
    /// Error class the provider must report for a fault (defaults follow the trait contract).
    fn expected_class(&self, fault: Fault) -> ErrorClass {
        match fault {
            Fault::Capacity => ErrorClass::Capacity,
            Fault::Unauthorized => ErrorClass::Account,
            Fault::RateLimit | Fault::ServerError | Fault::LoseCreateResponse => {
                ErrorClass::Retryable
            }
        }
    }
}

/// A fresh key for one check.
pub fn key(check: &str, attempt: u32) -> ResourceKey {
    ResourceKey {
        installation: INSTALLATION.into(),
        namespace: "default".into(),
        name: check.into(),
        uid: uuid::Uuid::new_v4().to_string(),
        attempt,
    }
}

/// Observes until `pred` holds or ~10 s pass; returns the last observation.
pub async fn observe_until<H: Harness>(
    h: &H,
    key: &ResourceKey,
    id: &str,
    pred: impl Fn(&Option<Machine>) -> bool,
) -> Option<Machine> {
    let p = h.provider();
    let mut last = None;
    for _ in 0..100 {
        match p.observe(key, Some(id)).await {
            Ok(m) => {
                if pred(&m) {
                    return m;
                }
                last = m;
            }
            Err(e) if e.is_retryable() => {}
            Err(e) => panic!("observe failed terminally: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// Creates, retrying retryable errors a few times (as the controller would).
pub async fn create_with_retries<H: Harness>(h: &H, key: &ResourceKey) -> Machine {
    let p = h.provider();
    let mut last: Option<ProviderError> = None;
    for _ in 0..5 {
        match p.create(key, &h.spec()).await {
            Ok(m) => return m,
            Err(e) if e.is_retryable() => last = Some(e),
            Err(e) => panic!("create failed terminally: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("create kept failing: {last:?}");
}

/// Repeating create for one key returns the same machine and the backend holds one.
pub async fn create_is_idempotent<H: Harness>(h: &H) {
    let k = key("idempotent", 1);
    let a = create_with_retries(h, &k).await;
    let b = create_with_retries(h, &k).await;
    assert_eq!(
        a.id, b.id,
        "a repeated create must return the first machine"
    );
    assert_eq!(h.live_machines(&k.uid).await, 1);
    assert_eq!(a.owner_uid.as_deref(), Some(k.uid.as_str()));
    assert_eq!(a.attempt, Some(1), "a created machine reports its attempt");
    assert!(
        !a.state.is_final(),
        "a new machine is not already ended: {:?}",
        a.state
    );
}

/// A create whose response was lost is not repeated as a second machine.
pub async fn lost_create_response_does_not_duplicate<H: Harness>(h: &H) {
    if !h.inject(Fault::LoseCreateResponse).await {
        return;
    }
    let k = key("lost-response", 1);
    let first = h.provider().create(&k, &h.spec()).await;
    if let Err(e) = &first {
        assert!(
            e.is_retryable(),
            "a lost response must be retryable, got {e}"
        );
    }
    let m = create_with_retries(h, &k).await;
    if let Ok(f) = first {
        assert_eq!(f.id, m.id);
    }
    assert_eq!(
        h.live_machines(&k.uid).await,
        1,
        "exactly one machine after a lost response"
    );
}

/// A machine whose id was lost is found by owner.
pub async fn lost_id_is_adopted<H: Harness>(h: &H) {
    let k = key("adopt", 1);
    let m = create_with_retries(h, &k).await;
    let found = h
        .provider()
        .observe(&k, None)
        .await
        .expect("observe by owner");
    assert_eq!(found.map(|f| f.id), Some(m.id));
    let other = key("adopt-other", 1);
    assert!(
        h.provider()
            .observe(&other, None)
            .await
            .expect("observe")
            .is_none()
    );
}

/// Different attempts of one owner are different machines.
pub async fn attempts_are_distinct<H: Harness>(h: &H) {
    let k1 = key("attempts", 1);
    let mut k2 = k1.clone();
    k2.attempt = 2;
    let a = create_with_retries(h, &k1).await;
    let b = create_with_retries(h, &k2).await;
    assert_ne!(a.id, b.id);
}

/// One list call returns every owned machine with its owner.
pub async fn list_is_batched<H: Harness>(h: &H) {
    let ks = [key("list-a", 1), key("list-b", 1), key("list-c", 1)];
    let mut ids = vec![];
    for k in &ks {
        ids.push(create_with_retries(h, k).await.id);
    }
    let all = h.provider().list().await.expect("list");
    let mut seen = std::collections::HashSet::new();
    assert!(
        all.iter().all(|m| seen.insert(m.id.as_str())),
        "list returns each machine once"
    );
    for (k, id) in ks.iter().zip(&ids) {
        let m = all
            .iter()
            .find(|m| &m.id == id)
            .unwrap_or_else(|| panic!("{id} missing from list"));
        assert_eq!(m.owner_uid.as_deref(), Some(k.uid.as_str()));
        assert_eq!(m.attempt, Some(1));
    }
}

/// Every provider-side event maps to the documented state.
pub async fn states_are_normalized<H: Harness>(h: &H) {
    let events = [
        Drive::Running,
        Drive::Stopped,
        Drive::Interrupted,
        Drive::ExitSuccess,
        Drive::ExitFailure(3),
        Drive::ProviderFailure,
        Drive::Vanish,
    ];
    for event in events {
        let Some((state, reason)) = h.expected(event) else {
            continue;
        };
        let k = key("states", 1);
        let m = create_with_retries(h, &k).await;
        // Events happen to running machines; a backend that cannot force booting lets it boot.
        if event != Drive::Running {
            let _ = h.drive(&m.id, Drive::Running).await;
            observe_until(h, &k, &m.id, |o| {
                o.as_ref()
                    .is_some_and(|x| x.state == ResourceState::Running)
            })
            .await;
        }
        assert!(
            h.drive(&m.id, event).await,
            "backend could not drive {event:?}"
        );
        let seen = observe_until(h, &k, &m.id, |o| match o {
            Some(x) => x.state == state && x.reason == reason,
            None => {
                state == ResourceState::Terminated
                    || reason == runctl::provider::reasons::DISAPPEARED
            }
        })
        .await;
        if let Some(x) = &seen {
            assert_eq!((x.state, x.reason), (state, reason), "{event:?}");
            if let Drive::ExitFailure(code) = event
                && x.exit_code.is_some()
            {
                assert_eq!(x.exit_code, Some(code), "{event:?}");
            }
        }
    }
}

/// Each injected fault comes back with its class.
pub async fn errors_are_classified<H: Harness>(h: &H) {
    for fault in [
        Fault::Capacity,
        Fault::RateLimit,
        Fault::ServerError,
        Fault::Unauthorized,
    ] {
        if !h.inject(fault).await {
            continue;
        }
        let k = key("errors", 1);
        let err = h
            .provider()
            .create(&k, &h.spec())
            .await
            .expect_err(&format!("{fault:?} must fail the create"));
        assert_eq!(err.class(), h.expected_class(fault), "{fault:?}: {err}");
        assert_eq!(
            h.live_machines(&k.uid).await,
            0,
            "{fault:?} must not leave a machine"
        );
        let m = create_with_retries(h, &k).await;
        assert_eq!(
            m.owner_uid.as_deref(),
            Some(k.uid.as_str()),
            "{fault:?} must fail one call only"
        );
        assert_eq!(h.live_machines(&k.uid).await, 1);
    }
}

/// Terminate is idempotent and a gone machine is Gone.
pub async fn terminate_is_idempotent<H: Harness>(h: &H) {
    let k = key("terminate", 1);
    let m = create_with_retries(h, &k).await;
    let p = h.provider();
    let first = p.terminate(&m.id).await.expect("terminate");
    assert!(matches!(first, Termination::InProgress | Termination::Gone));
    let mut gone = false;
    for _ in 0..100 {
        if p.terminate(&m.id).await.expect("terminate again") == Termination::Gone {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "terminate must reach Gone");
    assert_eq!(h.live_machines(&k.uid).await, 0);
    let after = p
        .observe(&k, Some(&m.id))
        .await
        .expect("observe after terminate");
    if let Some(x) = after {
        assert!(
            x.state.is_final(),
            "a terminated machine reports a final state, got {:?}",
            x.state
        );
    }
    let by_owner = p
        .observe(&k, None)
        .await
        .expect("observe by owner after terminate");
    if let Some(x) = by_owner {
        assert_eq!(
            x.id, m.id,
            "observe by owner finds the terminated machine or nothing"
        );
        assert!(
            x.state.is_final(),
            "a terminated machine reports a final state, got {:?}",
            x.state
        );
    }
}

/// A machine deleted outside runctl is Gone to terminate and not billing to observe.
pub async fn vanished_machine_is_gone<H: Harness>(h: &H) {
    let k = key("vanish", 1);
    let m = create_with_retries(h, &k).await;
    if !h.drive(&m.id, Drive::Vanish).await {
        return;
    }
    let p = h.provider();
    let mut gone = false;
    for _ in 0..100 {
        if p.terminate(&m.id)
            .await
            .expect("terminate a vanished machine")
            == Termination::Gone
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "terminating a vanished machine must reach Gone");
    if let Some(x) = p
        .observe(&k, Some(&m.id))
        .await
        .expect("observe a vanished machine")
    {
        assert!(
            x.state.is_final(),
            "a vanished machine is not billing, got {:?}",
            x.state
        );
    }
}

/// Workload env values (which may be Secret values) never show in what the provider returns.
pub async fn secrets_stay_out_of_machines<H: Harness>(h: &H) {
    let mut spec = h.spec();
    let Some(workload) = spec.workload.as_mut() else {
        return;
    };
    let secret = format!("conformance-secret-{}", uuid::Uuid::new_v4().simple());
    workload
        .env
        .insert("RUNCTL_CONFORMANCE_SECRET".into(), secret.clone());
    let k = key("secrets", 1);
    let p = h.provider();
    let mut created = None;
    for _ in 0..5 {
        match p.create(&k, &spec).await {
            Ok(m) => {
                created = Some(m);
                break;
            }
            Err(e) => {
                assert!(
                    !format!("{e} {e:?}").contains(&secret),
                    "an error shows a secret: {e}"
                );
                assert!(e.is_retryable(), "create failed terminally: {e}");
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = created.expect("create with a secret env value");
    let observed = p.observe(&k, Some(&m.id)).await.expect("observe");
    let listed = p.list().await.expect("list");
    let text = format!("{m:?} {observed:?} {listed:?}");
    assert!(
        !text.contains(&secret),
        "a machine shows a workload env value"
    );
}

/// Prices are positive.
pub async fn prices_are_quoted<H: Harness>(h: &H) {
    let q = h.provider().price(&h.spec()).await.expect("price");
    assert!(
        q.per_hour > 0.0 && q.per_hour.is_finite(),
        "price per hour must be positive: {q:?}"
    );
}

/// Runs every check.
pub async fn run_all<H: Harness>(h: &H) {
    create_is_idempotent(h).await;
    lost_create_response_does_not_duplicate(h).await;
    lost_id_is_adopted(h).await;
    attempts_are_distinct(h).await;
    list_is_batched(h).await;
    states_are_normalized(h).await;
    errors_are_classified(h).await;
    terminate_is_idempotent(h).await;
    vanished_machine_is_gone(h).await;
    secrets_stay_out_of_machines(h).await;
    prices_are_quoted(h).await;
}
