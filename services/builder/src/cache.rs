//! Each owner's build caches on the host: `packages/` (what package managers cache, and the CLIs
//! the builder installs; the owner's build sandboxes see it at `/cache`, writable) and `layers/`
//! (dependency layers, which only the platform writes).
//!
//! Per owner, never shared: a build can write its cache, so a shared one would let one tenant
//! plant packages in another's build.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

pub(crate) struct OwnerCache {
    /// Bound at `/cache` in the owner's build sandboxes; owned by the sandbox user.
    pub packages: PathBuf,
    /// Dependency layers; root's, never bound into a sandbox.
    pub layers: PathBuf,
}

impl OwnerCache {
    /// Makes (or finds) the owner's directories with the ownership and modes they need.
    pub(crate) async fn open(root: &Path, owner: &str) -> std::io::Result<OwnerCache> {
        let owner = owner.to_lowercase();
        if owner.is_empty() || !owner.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(std::io::Error::other(format!("unusable owner id {owner:?}")));
        }
        let base = root.join(&owner);
        let cache = OwnerCache { packages: base.join("packages"), layers: base.join("layers") };
        let (packages, layers) = (cache.packages.clone(), cache.layers.clone());
        let root = root.to_path_buf();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            // The sandbox user must pass through `root` and `base` to reach `packages`, and see nothing else there.
            for dir in [&root, &base] {
                std::fs::create_dir_all(dir)?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
            }
            std::fs::create_dir_all(packages.join("tools"))?;
            for dir in [&packages, &packages.join("tools")] {
                std::os::unix::fs::chown(dir, Some(sandbox::APP_UID), Some(sandbox::APP_UID))?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            }
            std::fs::create_dir_all(&layers)?;
            std::fs::set_permissions(&layers, std::fs::Permissions::from_mode(0o700))
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(cache)
    }

    /// `$CARGO_HOME/config.toml` of the owner's builds (a mirror replacing crates.io).
    pub(crate) async fn write_cargo_config(&self, content: &str) -> std::io::Result<()> {
        let dir = self.packages.join("cargo");
        tokio::fs::create_dir_all(&dir).await?;
        std::os::unix::fs::chown(&dir, Some(sandbox::APP_UID), Some(sandbox::APP_UID))?;
        let path = dir.join("config.toml");
        // Never written through a link a build planted there.
        let _ = tokio::fs::remove_file(&path).await;
        tokio::fs::write(&path, content).await
    }

    /// One install at a time of the same tool into the same cache (in this process).
    pub(crate) async fn tool_lock(&self, guest: &str) -> Arc<tokio::sync::Mutex<()>> {
        static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
        let key = self.packages.join(guest);
        LOCKS.get_or_init(Default::default).lock().expect("not poisoned").entry(key).or_default().clone()
    }
}
