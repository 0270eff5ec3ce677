//! Per-attempt callback tokens: generation, the Secret that keeps them, and comparison that
//! takes the same time whatever the input.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Key of the token in its Secret.
pub const TOKEN_KEY: &str = "token";

/// A new random token: 32 bytes from the OS-seeded generator, hex encoded.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The Secret object for a token (metadata is filled by the caller: owner, labels).
pub fn secret(meta: ObjectMeta, token: &str) -> Secret {
    Secret {
        metadata: meta,
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_string(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// Reads the token out of a Secret.
pub fn from_secret(secret: &Secret) -> Option<String> {
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(TOKEN_KEY)) {
        return String::from_utf8(v.0.clone()).ok();
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(TOKEN_KEY))
        .cloned()
}

/// Digest kept in memory instead of the token itself.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares a presented token with a stored digest in constant time (over the digests).
pub fn matches(presented: &str, stored: &[u8; 32]) -> bool {
    let got = digest(presented);
    got.iter()
        .zip(stored.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_compare_by_digest() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        let d = digest(&a);
        assert!(matches(&a, &d));
        assert!(!matches(&b, &d));
        assert!(!matches("", &d));
    }

    #[test]
    fn secret_round_trip() {
        let s = secret(
            ObjectMeta {
                name: Some(crate::attempt::token_secret_name("job", 2)),
                ..Default::default()
            },
            "tok",
        );
        assert_eq!(s.metadata.name.as_deref(), Some("job-a2-callback"));
        assert_eq!(from_secret(&s).as_deref(), Some("tok"));
    }
}
