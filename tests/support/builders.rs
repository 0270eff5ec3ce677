//! Fixtures as builders.
#![allow(dead_code)]

use runctl::crd::common::{EnvVar, EnvVarSource, SecretKeyRef, WorkloadSpec};
use runctl::crd::{CloudResource, CloudResourceSpec, DeletionPolicy, ProviderKind};

/// Builds CloudResources.
pub struct CloudResourceBuilder {
    name: String,
    spec: CloudResourceSpec,
}

impl CloudResourceBuilder {
    /// A sim machine of type `sim.a100`.
    pub fn sim(name: &str) -> Self {
        let spec: CloudResourceSpec = serde_json::from_value(
            serde_json::json!({"provider": "sim", "instanceType": "sim.a100"}),
        )
        .expect("valid spec");
        Self {
            name: name.into(),
            spec,
        }
    }

    /// Sets the provider.
    pub fn provider(mut self, p: ProviderKind) -> Self {
        self.spec.provider = p;
        self
    }

    /// Sets the instance type.
    pub fn instance_type(mut self, t: &str) -> Self {
        self.spec.instance_type = Some(t.into());
        self
    }

    /// Sets the GPU type and count.
    pub fn gpu(mut self, t: &str, count: u32) -> Self {
        self.spec.gpu_type = Some(t.into());
        self.spec.gpu_count = Some(count);
        self
    }

    /// Runs an image.
    pub fn image(mut self, image: &str) -> Self {
        self.spec.workload.get_or_insert_with(|| WorkloadSpec {
            image: image.into(),
            command: vec![],
            args: vec![],
            env: vec![],
            reporting: None,
        });
        self
    }

    /// Adds a literal env var (adds a default image when none).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self = self.image("busybox");
        if let Some(w) = self.spec.workload.as_mut() {
            w.env.push(EnvVar {
                name: name.into(),
                value: Some(value.into()),
                value_from: None,
            });
        }
        self
    }

    /// Adds an env var from a Secret key.
    pub fn env_from_secret(mut self, name: &str, secret: &str, key: &str) -> Self {
        self = self.image("busybox");
        if let Some(w) = self.spec.workload.as_mut() {
            w.env.push(EnvVar {
                name: name.into(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: SecretKeyRef {
                        name: secret.into(),
                        key: key.into(),
                    },
                }),
            });
        }
        self
    }

    /// Spot.
    pub fn spot(mut self) -> Self {
        self.spec.spot = true;
        self
    }

    /// Deletion policy.
    pub fn deletion_policy(mut self, p: DeletionPolicy) -> Self {
        self.spec.deletion_policy = p;
        self
    }

    /// Lifetime.
    pub fn max_lifetime(mut self, secs: i64) -> Self {
        self.spec.max_lifetime_seconds = Some(secs);
        self
    }

    /// The object.
    pub fn build(self) -> CloudResource {
        CloudResource::new(&self.name, self.spec)
    }
}
