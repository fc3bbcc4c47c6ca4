//! Local SQLite: a database file per resource at `<dir>/<id>/db.sqlite`.
//!
//! A directory per resource, because SQLite writes its journal and WAL files next to the database: the runtime
//! can hand an app the whole directory and nothing else.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::{Credentials, Provider, ProviderError, ResourceKind, Result, Size, validate_id};

const FILE_NAME: &str = "db.sqlite";

#[derive(Debug, Clone)]
pub struct LocalSqliteProvider {
    /// Where the resources' directories live; made absolute so the URL does not depend on the working directory.
    pub dir: PathBuf,
}

impl LocalSqliteProvider {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn resource_dir(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        let dir = std::path::absolute(&self.dir).map_err(|e| io_error("resolving the data directory", &self.dir, e))?;
        Ok(dir.join(id))
    }
}

#[async_trait::async_trait]
impl Provider for LocalSqliteProvider {
    fn kind(&self) -> ResourceKind {
        ResourceKind::Sqlite
    }

    async fn create(&self, id: &str, size: &str) -> Result<Credentials> {
        // Local files have no size limit; the size is still checked so agents learn the choices.
        Size::parse(size)?;
        let dir = self.resource_dir(id)?;
        let file = blocking(move || create_file(&dir)).await?;
        let path = file.to_string_lossy().into_owned();
        Ok(Credentials {
            url: format!("file:{path}"),
            host: None,
            port: None,
            database: Some(path),
            user: None,
            password: None,
            token: None,
        })
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let dir = self.resource_dir(id)?;
        // The runtime keeps a resource's files on a disk image beside its directory (`<id>.img`).
        let image = dir.with_extension("img");
        blocking(move || {
            for removed in [fs::remove_dir_all(&dir), fs::remove_file(&image)] {
                match removed {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error("deleting", &dir, e)),
                }
            }
            Ok(())
        })
        .await
    }
}

/// Makes the directory (0700) and an empty database file (0600) unless they exist; existing data is kept.
fn create_file(dir: &Path) -> Result<PathBuf> {
    // The data directory itself may be missing on a fresh machine.
    if let Some(parent) = dir.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| io_error("creating", parent, e))?;
    }
    let made_dir = match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(io_error("creating", dir, e)),
    };
    let file = dir.join(FILE_NAME);
    let result = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&file)
        // `mode` applies only to a new file: tighten one left by an earlier attempt too.
        .and_then(|f| f.set_permissions(fs::Permissions::from_mode(0o600)))
        .map_err(|e| io_error("creating", &file, e));
    if let Err(e) = result {
        if made_dir {
            let _ = fs::remove_dir_all(dir);
        }
        return Err(e);
    }
    Ok(file)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProviderError::Unavailable(format!("the file operation was interrupted ({e}); retry")))?
}

fn io_error(what: &str, path: &Path, e: io::Error) -> ProviderError {
    ProviderError::Failed(format!("{what} {} failed: {e}", path.display()))
}
