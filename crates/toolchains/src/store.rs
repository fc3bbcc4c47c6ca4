//! The content-addressed cache: `<root>/<key>/` per installed toolchain, staging under `.tmp/`,
//! install locks under `.locks/`.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::{Error, Tool};

pub(crate) const MANIFEST: &str = ".toolchain.json";
/// Bumped when the shape of installed trees changes, so old entries are not reused.
pub(crate) const LAYOUT: u32 = 1;
const STALE_STAGING: Duration = Duration::from_secs(24 * 3600);

/// What an entry holds, written inside it last before the rename.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub tool: Tool,
    pub version: String,
    pub key: String,
    /// The source label, for build logs.
    pub source: String,
    /// `<what> <digest>` of everything that went into the entry.
    pub components: Vec<String>,
    pub layout: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Installed {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

pub(crate) struct Store {
    root: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    swept: Once,
}

/// Held while one tool version is being installed: other tasks of this process wait on the mutex,
/// other processes on the file lock (released when the file is closed).
pub(crate) struct Lock {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    _file: fs::File,
}

impl Store {
    pub fn new(root: PathBuf) -> Store {
        Store { root, locks: Mutex::new(HashMap::new()), swept: Once::new() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn ensure_dirs(&self) -> Result<(), Error> {
        // The root is searchable by everyone (bwrap opens bind sources as the sandbox user); staging
        // and locks are the platform's alone.
        for (dir, mode) in
            [(self.root.clone(), 0o755), (self.root.join(".tmp"), 0o700), (self.root.join(".locks"), 0o700)]
        {
            fs::create_dir_all(&dir).map_err(|e| Error::install(&dir, e))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).map_err(|e| Error::install(&dir, e))?;
        }
        // Leftovers of a crashed install (never younger than a day: another process may be busy).
        self.swept.call_once(|| {
            let Ok(entries) = fs::read_dir(self.root.join(".tmp")) else { return };
            for entry in entries.flatten() {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > STALE_STAGING);
                if old {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        });
        Ok(())
    }

    /// The entry at `key`, if it is complete.
    pub fn find(&self, key: &str) -> Option<Installed> {
        read_entry(&self.root.join(key))
    }

    /// Any complete entry of this exact tool version.
    pub fn installed(&self, tool: Tool, version: &str) -> Option<Installed> {
        self.installed_all(tool).into_iter().find(|i| i.manifest.version == version)
    }

    /// Every complete entry of a tool, in name order.
    pub fn installed_all(&self, tool: Tool) -> Vec<Installed> {
        let prefix = format!("{tool}-");
        let Ok(entries) = fs::read_dir(&self.root) else { return Vec::new() };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|n| read_entry(&self.root.join(n)))
            .filter(|i| i.manifest.tool == tool && i.manifest.layout == LAYOUT)
            .collect()
    }

    pub async fn lock(&self, name: &str) -> Result<Lock, Error> {
        self.ensure_dirs()?;
        let mutex = self.locks.lock().unwrap().entry(name.to_string()).or_default().clone();
        let guard = mutex.lock_owned().await;
        let path = self.root.join(".locks").join(format!("{name}.lock"));
        let file = tokio::task::spawn_blocking(move || -> Result<fs::File, Error> {
            let file = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| Error::install(&path, e))?;
            file.lock().map_err(|e| Error::install(&path, e))?;
            Ok(file)
        })
        .await
        .map_err(|e| Error::install(&self.root, e))??;
        Ok(Lock { _guard: guard, _file: file })
    }

    /// A fresh staging directory for `key`, removed when dropped (also when the install is
    /// abandoned half-way).
    pub fn staging(&self, key: &str) -> Result<Staging, Error> {
        self.ensure_dirs()?;
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = self.root.join(".tmp").join(format!("{key}.{}.{nanos}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| Error::install(&dir, e))?;
        let tree = dir.join("tree");
        fs::create_dir(&tree).map_err(|e| Error::install(&tree, e))?;
        Ok(Staging { dir, root: self.root.clone() })
    }
}

pub(crate) struct Staging {
    dir: PathBuf,
    root: PathBuf,
}

impl Staging {
    /// The tree that becomes `<root>/<key>`.
    pub fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }

    /// Where a download is kept until it is extracted.
    pub fn download(&self, n: usize) -> PathBuf {
        self.dir.join(format!("download-{n}"))
    }

    /// Normalises the tree, writes the manifest, and renames the tree into place. Blocking.
    pub fn commit(self, manifest: Manifest) -> Result<Installed, Error> {
        let tree = self.tree();
        crate::archive::normalize(&tree)?;
        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::install(&tree, e))?;
        let manifest_path = tree.join(MANIFEST);
        fs::write(&manifest_path, text).map_err(|e| Error::install(&manifest_path, e))?;
        crate::archive::normalize(&manifest_path)?;
        let dest = self.root.join(&manifest.key);
        match fs::rename(&tree, &dest) {
            Ok(()) => {}
            // Another process finished the same key first: theirs is as good as ours.
            Err(e) if matches!(e.kind(), io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists) => {}
            Err(e) => return Err(Error::install(&dest, e)),
        }
        read_entry(&dest).ok_or_else(|| Error::install(&dest, "the installed entry has no readable manifest"))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn read_entry(dir: &Path) -> Option<Installed> {
    let text = fs::read(dir.join(MANIFEST)).ok()?;
    let manifest: Manifest = serde_json::from_slice(&text).ok()?;
    Some(Installed { dir: dir.to_path_buf(), manifest })
}

/// `<tool>-<version>-<12 hex>`: the hash covers the layout and every part (digests of what goes in).
pub(crate) fn key(tool: Tool, version: &str, parts: &[String]) -> String {
    let mut hasher = sha2::Sha256::new();
    hasher.update(format!("layout {LAYOUT}\n"));
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update(b"\n");
    }
    let hash = hex::encode(hasher.finalize());
    format!("{tool}-{version}-{}", &hash[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_the_same_parts_when_keyed_then_the_key_is_stable_and_changes_with_any_part() {
        let a = key(Tool::Node, "22.11.0", &["node sha512-x".into(), "npm sha512-y".into()]);
        assert_eq!(a, key(Tool::Node, "22.11.0", &["node sha512-x".into(), "npm sha512-y".into()]));
        assert!(a.starts_with("node-22.11.0-") && a.len() == "node-22.11.0-".len() + 12, "{a}");
        assert_ne!(a, key(Tool::Node, "22.11.0", &["node sha512-x".into(), "npm sha512-z".into()]));
    }
}
