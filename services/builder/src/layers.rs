//! Dependency layers: the directories an install produced (`.venv`, `node_modules`), kept per
//! owner and keyed by everything that determines them, so that a rebuild whose lockfile did not
//! change restores them in a moment instead of installing again.
//!
//! A layer is written only by the platform (root), from a build of the same owner, and lives
//! outside what any sandbox sees; builds of other owners never read it. The checkout is untrusted:
//! inputs are hashed without following symlinks, and outputs are copied with `cp -a`, which never
//! dereferences one.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::plan::Plan;

/// Layers kept per owner; the least recently used go first.
const KEEP: usize = 8;
/// An input larger than this is not a lockfile: no layer for such a build.
const MAX_INPUT: u64 = 32 * 1024 * 1024;

/// The key of the plan's dependency layer: its install command, toolchains, tools and variables,
/// and the content of every input file (or its absence). None when the plan has no layer.
pub(crate) fn key(plan: &Plan, toolchains: &[String], work: &Path) -> Option<String> {
    let deps = plan.deps.as_ref()?;
    let install = plan.install.as_ref()?;
    if deps.outputs.iter().any(|o| !is_plain_name(o)) {
        return None;
    }
    let mut h = Sha256::new();
    let mut field = |label: &str, value: &[u8]| {
        h.update(label.as_bytes());
        h.update((value.len() as u64).to_le_bytes());
        h.update(value);
    };
    field("v", b"1");
    field("install", install.as_bytes());
    for t in toolchains {
        field("toolchain", t.as_bytes());
    }
    for tool in &plan.tools {
        field("tool", format!("{}@{}", tool.name, tool.version).as_bytes());
    }
    for (k, v) in &plan.env {
        field("env", format!("{k}={v}").as_bytes());
    }
    for output in &deps.outputs {
        field("output", output.as_bytes());
    }
    for input in &deps.inputs {
        field("input", input.as_bytes());
        let path = work.join(input);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() && meta.len() <= MAX_INPUT => {
                let content = std::fs::read(&path).ok()?;
                field("content", &Sha256::digest(&content));
            }
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&path).ok()?;
                field("symlink", target.as_os_str().as_encoded_bytes());
            }
            Ok(_) => return None,
            Err(_) => field("absent", b""),
        }
    }
    Some(hex::encode(h.finalize()))
}

/// One top-level directory name of the app: never a path that could lead elsewhere.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// An owner's layers under `<root>/<key>/`.
pub(crate) struct Layers {
    pub root: PathBuf,
}

impl Layers {
    /// Copies the layer's outputs into `work`, replacing whatever the checkout had there. False
    /// when there is no such layer (or it cannot be used); then nothing was changed.
    pub(crate) async fn restore(&self, key: &str, outputs: &[String], work: &Path) -> std::io::Result<bool> {
        let layer = self.root.join(key);
        if !tokio::fs::try_exists(layer.join(".complete")).await.unwrap_or(false) {
            return Ok(false);
        }
        for output in outputs {
            let target = work.join(output);
            // A checkout's own `node_modules` (or a symlink named so) must not receive the copy.
            remove_any(&target).await?;
            let source = layer.join(output);
            if tokio::fs::symlink_metadata(&source).await.is_ok() {
                cp_a(&source, &target).await?;
            }
        }
        // Touched: pruning keeps the layers in use.
        let _ = tokio::fs::File::create(layer.join(".complete")).await;
        Ok(true)
    }

    /// Keeps the outputs `work` has now as the layer `key` (written aside, then renamed: a layer
    /// is either whole or absent), then prunes the oldest beyond [`KEEP`].
    pub(crate) async fn save(&self, key: &str, outputs: &[String], work: &Path) -> std::io::Result<()> {
        let layer = self.root.join(key);
        if tokio::fs::try_exists(layer.join(".complete")).await.unwrap_or(false) {
            return Ok(());
        }
        let staging = self.root.join(format!(".{key}.{}", ulid::Ulid::generate()));
        tokio::fs::create_dir_all(&staging).await?;
        let result = async {
            for output in outputs {
                let source = work.join(output);
                if tokio::fs::symlink_metadata(&source).await.is_ok() {
                    cp_a(&source, &staging.join(output)).await?;
                }
            }
            tokio::fs::File::create(staging.join(".complete")).await?;
            remove_any(&layer).await?;
            tokio::fs::rename(&staging, &layer).await
        }
        .await;
        if result.is_err() {
            let _ = remove_any(&staging).await;
        }
        result?;
        self.prune().await
    }

    async fn prune(&self) -> std::io::Result<()> {
        let mut layers = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.root).await?;
        while let Some(entry) = entries.next_entry().await? {
            let used = tokio::fs::metadata(entry.path().join(".complete")).await.and_then(|m| m.modified());
            if let Ok(used) = used {
                layers.push((used, entry.path()));
            }
        }
        layers.sort();
        let excess = layers.len().saturating_sub(KEEP);
        for (_, path) in layers.into_iter().take(excess) {
            remove_any(&path).await?;
        }
        Ok(())
    }
}

/// Removes a file, a symlink (never what it points at) or a directory tree; absent is fine.
async fn remove_any(path: &Path) -> std::io::Result<()> {
    match tokio::fs::symlink_metadata(path).await {
        Ok(meta) if meta.is_dir() => tokio::fs::remove_dir_all(path).await,
        Ok(_) => tokio::fs::remove_file(path).await,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// `cp -a` (never dereferencing a symlink, keeping owners and modes), `to` must not exist.
async fn cp_a(from: &Path, to: &Path) -> std::io::Result<()> {
    let out = Command::new("cp")
        .arg("-a")
        .arg("--no-target-directory")
        .arg(from)
        .arg(to)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .kill_on_drop(true)
        .output()
        .await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("cp: {}", String::from_utf8_lossy(&out.stderr).trim())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Deps, Provider};
    use std::collections::BTreeMap;

    fn plan(install: &str) -> Plan {
        Plan {
            provider: Provider::Node,
            toolchains: vec![],
            tools: vec![],
            package_manager: Some("npm".into()),
            install: Some(install.into()),
            build: None,
            prune: None,
            start: Some("npm start".into()),
            static_root: None,
            env: BTreeMap::new(),
            path: vec![],
            deps: Some(Deps {
                inputs: vec!["package.json".into(), "package-lock.json".into()],
                outputs: vec!["node_modules".into()],
            }),
        }
    }

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dmcp-layers-{}", ulid::Ulid::generate()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn given_the_same_inputs_when_keyed_then_the_same_key_and_any_change_changes_it() {
        let work = scratch();
        std::fs::write(work.join("package.json"), "{}").unwrap();
        std::fs::write(work.join("package-lock.json"), "{\"v\":1}").unwrap();
        let base = key(&plan("npm ci"), &["node-22".into()], &work).unwrap();
        assert_eq!(key(&plan("npm ci"), &["node-22".into()], &work).unwrap(), base);
        assert_ne!(key(&plan("npm ci --x"), &["node-22".into()], &work).unwrap(), base);
        assert_ne!(key(&plan("npm ci"), &["node-20".into()], &work).unwrap(), base);
        std::fs::write(work.join("package-lock.json"), "{\"v\":2}").unwrap();
        assert_ne!(key(&plan("npm ci"), &["node-22".into()], &work).unwrap(), base);
        std::fs::remove_file(work.join("package-lock.json")).unwrap();
        let absent = key(&plan("npm ci"), &["node-22".into()], &work).unwrap();
        assert_ne!(absent, base);
        std::fs::remove_dir_all(work).unwrap();
    }

    #[test]
    fn given_an_input_that_is_a_symlink_when_keyed_then_its_target_is_never_read() {
        let work = scratch();
        std::os::unix::fs::symlink("/dev/zero", work.join("package-lock.json")).unwrap();
        let k = key(&plan("npm ci"), &[], &work);
        assert!(k.is_some(), "a symlink is hashed by its target's name");
        std::fs::remove_dir_all(work).unwrap();
    }

    #[test]
    fn given_an_output_that_is_a_path_when_keyed_then_no_layer() {
        let mut p = plan("npm ci");
        p.deps.as_mut().unwrap().outputs = vec!["../etc".into()];
        assert_eq!(key(&p, &[], &scratch()), None);
    }

    #[tokio::test]
    async fn given_a_saved_layer_when_restored_over_a_planted_symlink_then_the_link_is_replaced_not_followed() {
        let root = scratch();
        let layers = Layers { root: root.join("layers") };
        tokio::fs::create_dir_all(&layers.root).await.unwrap();
        let built = scratch();
        std::fs::create_dir_all(built.join("node_modules/a")).unwrap();
        std::fs::write(built.join("node_modules/a/index.js"), "module.exports = 1").unwrap();
        std::os::unix::fs::symlink("../a/index.js", built.join("node_modules/a/link.js")).unwrap();
        layers.save("k1", &["node_modules".into()], &built).await.unwrap();

        let next = scratch();
        let victim = scratch();
        std::os::unix::fs::symlink(&victim, next.join("node_modules")).unwrap();
        assert!(layers.restore("k1", &["node_modules".into()], &next).await.unwrap());
        assert_eq!(std::fs::read_to_string(next.join("node_modules/a/index.js")).unwrap(), "module.exports = 1");
        assert!(std::fs::symlink_metadata(next.join("node_modules/a/link.js")).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0, "the copy went through the planted link");
        assert!(!layers.restore("k2", &["node_modules".into()], &next).await.unwrap());
        for dir in [root, built, next, victim] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[tokio::test]
    async fn given_more_layers_than_kept_when_saving_then_the_oldest_go() {
        let root = scratch();
        let layers = Layers { root: root.clone() };
        let work = scratch();
        std::fs::create_dir_all(work.join("node_modules")).unwrap();
        for i in 0..KEEP + 2 {
            layers.save(&format!("k{i}"), &["node_modules".into()], &work).await.unwrap();
        }
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), KEEP);
        std::fs::remove_dir_all(root).unwrap();
        std::fs::remove_dir_all(work).unwrap();
    }
}
