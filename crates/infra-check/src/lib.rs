//! Checks of `infra/`, the manifests and playbooks that run the platform on a k3s cluster.
//!
//! Everything is in `tests/infra.rs`: every Kubernetes manifest must deserialise into the typed
//! object of its kind (and serialise back to the same document, so a misspelt field fails too),
//! the kustomization must list every file, the workloads must carry what operating them needs
//! (pools, resources, probes, security contexts), and `ansible-playbook --syntax-check` must
//! accept every playbook. This crate has no code of its own.
