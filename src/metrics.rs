//! Placeholder with the agreed interface; replaced by the runtime work.
#![allow(missing_docs, dead_code)]
pub struct Metrics;
pub struct ReconcileTimer;
impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
impl Metrics {
    pub fn new() -> Self {
        Metrics
    }
    pub fn reconcile_timer(&self, _c: &'static str) -> ReconcileTimer {
        ReconcileTimer
    }
    pub fn reconcile_ok(&self, _c: &'static str) {}
    pub fn reconcile_error(&self, _c: &'static str, _r: &'static str) {}
    pub fn provider_call(&self, _p: &'static str, _o: &'static str, _out: &'static str, _s: f64) {}
    pub fn set_objects(&self, _k: &'static str, _c: &[(&'static str, &'static str, i64)]) {}
    pub fn set_spend(&self, _p: &'static str, _h: f64, _a: f64) {}
    pub fn set_leader(&self, _l: bool) {}
    pub fn event_published(&self, _r: &'static str) {}
    pub fn encode(&self) -> String {
        String::new()
    }
}
