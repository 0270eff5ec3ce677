//! The served resource types: the built-in kinds and those installed from
//! CustomResourceDefinitions, keyed by group, version and plural.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::core::cel::{CompiledSchema, compile_schema};
use serde_json::Value;

/// One served resource at one version.
#[derive(Clone, Debug)]
pub(crate) struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    /// Whether a `/status` subresource is served (and isolates status writes).
    pub status: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// `openAPIV3Schema` for custom resources.
    pub schema: Option<Arc<Value>>,
    /// The schema's CEL rules, compiled once.
    pub cel: Option<Arc<CompiledSchema>>,
    /// Custom resource (from a CRD): validated, pruned, defaulted, has `generation`.
    pub custom: bool,
}

impl ResourceType {
    fn builtin(
        group: &str,
        version: &str,
        plural: &str,
        kind: &str,
        namespaced: bool,
        status: bool,
        short: &[&str],
    ) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            namespaced,
            status,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            categories: Vec::new(),
            schema: None,
            cel: None,
            custom: false,
        }
    }

    /// `group/version`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Storage key shared by all versions of a resource.
    pub fn storage_key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    /// `Kind.group` as used in Invalid messages.
    pub fn kind_group(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Whether objects carry `metadata.generation`.
    pub fn has_generation(&self) -> bool {
        self.custom || self.plural == "customresourcedefinitions"
    }
}

/// All served resources.
#[derive(Clone, Debug, Default)]
pub(crate) struct Registry {
    types: BTreeMap<(String, String, String), Arc<ResourceType>>,
}

impl Registry {
    /// The built-in kinds.
    pub fn with_builtins() -> Self {
        let mut registry = Registry::default();
        for rt in [
            ResourceType::builtin("", "v1", "namespaces", "Namespace", false, true, &["ns"]),
            ResourceType::builtin("", "v1", "secrets", "Secret", true, false, &[]),
            ResourceType::builtin("", "v1", "configmaps", "ConfigMap", true, false, &["cm"]),
            ResourceType::builtin("", "v1", "events", "Event", true, false, &["ev"]),
            ResourceType::builtin("", "v1", "services", "Service", true, true, &["svc"]),
            ResourceType::builtin(
                "",
                "v1",
                "serviceaccounts",
                "ServiceAccount",
                true,
                false,
                &["sa"],
            ),
            ResourceType::builtin("", "v1", "pods", "Pod", true, true, &["po"]),
            ResourceType::builtin("", "v1", "nodes", "Node", false, true, &["no"]),
            ResourceType::builtin(
                "events.k8s.io",
                "v1",
                "events",
                "Event",
                true,
                false,
                &["ev"],
            ),
            ResourceType::builtin(
                "coordination.k8s.io",
                "v1",
                "leases",
                "Lease",
                true,
                false,
                &[],
            ),
            ResourceType::builtin(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                false,
                true,
                &["crd", "crds"],
            ),
        ] {
            registry.insert(rt);
        }
        registry
    }

    fn insert(&mut self, rt: ResourceType) {
        self.types.insert(
            (rt.group.clone(), rt.version.clone(), rt.plural.clone()),
            Arc::new(rt),
        );
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Whether any resource of this group/version is served.
    pub fn serves_group_version(&self, group: &str, version: &str) -> bool {
        self.types
            .keys()
            .any(|(g, v, _)| g == group && v == version)
    }

    /// Any served version of the resource stored under `key` (`group/plural`).
    pub fn by_storage_key(&self, key: &str) -> Option<Arc<ResourceType>> {
        self.types
            .values()
            .find(|rt| rt.storage_key() == key)
            .cloned()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.types.values()
    }

    /// Serve (or re-serve) the kinds a CRD declares, replacing the previous definition.
    pub fn install_crd(&mut self, crd: &Value) -> Vec<Arc<ResourceType>> {
        let types = types_from_crd(crd);
        if let Some(first) = types.first() {
            let (group, plural) = (first.group.clone(), first.plural.clone());
            self.types
                .retain(|(g, _, p), _| !(g == &group && p == &plural));
        }
        for rt in &types {
            self.insert(rt.clone());
        }
        types.into_iter().map(Arc::new).collect()
    }

    /// Stop serving the kinds of a deleted CRD.
    pub fn remove_crd(&mut self, crd: &Value) {
        if let Some(rt) = types_from_crd(crd).first() {
            let (group, plural) = (rt.group.clone(), rt.plural.clone());
            self.types
                .retain(|(g, _, p), _| !(g == &group && p == &plural));
        }
    }
}

fn str_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The served versions a CRD declares.
pub(crate) fn types_from_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let (Some(group), Some(plural), Some(kind)) = (
        spec["group"].as_str(),
        names["plural"].as_str(),
        names["kind"].as_str(),
    ) else {
        return Vec::new();
    };
    let singular = names["singular"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| kind.to_lowercase());
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    versions
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(true))
        .filter_map(|v| {
            let schema = v["schema"]["openAPIV3Schema"]
                .is_object()
                .then(|| Arc::new(v["schema"]["openAPIV3Schema"].clone()));
            Some(ResourceType {
                group: group.into(),
                version: v["name"].as_str()?.into(),
                plural: plural.into(),
                singular: singular.clone(),
                kind: kind.into(),
                namespaced,
                status: v["subresources"]["status"].is_object(),
                short_names: str_list(&names["shortNames"]),
                categories: str_list(&names["categories"]),
                schema: schema.clone(),
                cel: schema.as_ref().map(|s| Arc::new(compile_schema(s))),
                custom: true,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crd_versions_become_types() {
        let crd = json!({"spec": {
            "group": "example.dev",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
            "scope": "Namespaced",
            "versions": [
                {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                 "schema": {"openAPIV3Schema": {"type": "object"}}},
                {"name": "v0", "served": false, "storage": false},
            ]
        }});
        let types = types_from_crd(&crd);
        assert_eq!(types.len(), 1);
        let rt = &types[0];
        assert_eq!(
            (rt.api_version().as_str(), rt.singular.as_str(), rt.status),
            ("example.dev/v1", "widget", true)
        );
        assert_eq!(rt.short_names, vec!["wd".to_string()]);
        assert!(rt.namespaced && rt.custom && rt.schema.is_some());
        assert_eq!(rt.kind_group(), "Widget.example.dev");
    }

    #[test]
    fn installing_again_replaces_versions() {
        let mut registry = Registry::with_builtins();
        let crd = |v: &str| {
            json!({"spec": {"group": "g.dev", "names": {"plural": "things", "kind": "Thing"},
            "scope": "Cluster", "versions": [{"name": v, "served": true}]}})
        };
        registry.install_crd(&crd("v1"));
        registry.install_crd(&crd("v2"));
        assert!(registry.get("g.dev", "v1", "things").is_none());
        assert!(
            !registry
                .get("g.dev", "v2", "things")
                .map(|t| t.namespaced)
                .unwrap_or(true)
        );
        registry.remove_crd(&crd("v2"));
        assert!(!registry.serves_group_version("g.dev", "v2"));
    }
}
