//! Local volumes (a SQLite resource's directory) on disks of a fixed size: each directory is the
//! mount point of its own ext4 image, mounted while any deployment uses it (the old and the new one
//! share it during a switch) and unmounted after the last.
//!
//! A resource's directory made before it had a disk (by the provider, or an older platform) is
//! moved onto a new disk the first time it is used.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

/// The volumes mounted now, with how many deployments use each.
#[derive(Clone, Default)]
pub struct Volumes {
    mounted: Arc<Mutex<HashMap<PathBuf, (sandbox::Disk, usize)>>>,
}

impl Volumes {
    /// Mounts each volume's disk (or counts one more user of it).
    pub(crate) async fn acquire(
        &self,
        host: &sandbox::Host,
        volumes: &[sandbox::Volume],
        size_mb: u32,
    ) -> Result<(), sandbox::Error> {
        let mut mounted = self.mounted.lock().await;
        for (i, v) in volumes.iter().enumerate() {
            if let Some((_, users)) = mounted.get_mut(&v.host) {
                *users += 1;
                continue;
            }
            match mount(host, &v.host, size_mb).await {
                Ok(disk) => {
                    mounted.insert(v.host.clone(), (disk, 1));
                }
                Err(e) => {
                    drop(mounted);
                    self.release(&volumes[..i]).await;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// One user fewer of each volume; the last unmounts it (its data stays in the image).
    pub(crate) async fn release(&self, volumes: &[sandbox::Volume]) {
        let mut mounted = self.mounted.lock().await;
        for v in volumes {
            let Some((_, users)) = mounted.get_mut(&v.host) else { continue };
            *users -= 1;
            if *users == 0
                && let Some((disk, _)) = mounted.remove(&v.host)
                && let Err(e) = disk.unmount().await
            {
                tracing::warn!(volume = %v.host.display(), error = %e, "unmounting a volume failed");
            }
        }
    }
}

/// The volume's image beside its directory, created (moving what the directory held onto it) or
/// opened (grown to `size_mb` if it was smaller).
async fn mount(host: &sandbox::Host, dir: &Path, size_mb: u32) -> Result<sandbox::Disk, sandbox::Error> {
    let image = dir.with_extension("img");
    if tokio::fs::try_exists(&image).await.unwrap_or(false) {
        return host.open_disk(&image, dir, size_mb).await;
    }
    let fresh = dir.with_extension("new");
    let _ = tokio::fs::remove_dir_all(&fresh).await;
    let disk = host.create_disk(&image, &fresh, size_mb).await?;
    let moved = async {
        if tokio::fs::try_exists(dir).await.unwrap_or(false) {
            let out = tokio::process::Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", dir.display()))
                .arg(&fresh)
                .kill_on_drop(true)
                .output()
                .await?;
            if !out.status.success() {
                return Err(std::io::Error::other(format!("cp: {}", String::from_utf8_lossy(&out.stderr).trim())));
            }
            tokio::fs::remove_dir_all(dir).await?;
        }
        tokio::fs::create_dir_all(dir).await
    }
    .await;
    let unmounted = disk.unmount().await;
    let _ = tokio::fs::remove_dir(&fresh).await;
    if let Err(e) = moved {
        let _ = tokio::fs::remove_file(&image).await;
        return Err(sandbox::Error::Io { context: format!("moving {} onto its disk", dir.display()), source: e });
    }
    unmounted?;
    host.open_disk(&image, dir, size_mb).await
}
