//! Test helpers: a checkout in a fresh temporary directory, written file by file.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use events::BuildPack;

use super::{Overrides, Plan, PlanError, detect};

/// A checkout in a fresh temporary directory, removed on drop.
pub(crate) struct App(pub(crate) PathBuf);

pub(crate) fn app() -> App {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("dmcp-plan-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    App(dir)
}

impl App {
    pub(crate) fn file(self, rel: &str, contents: impl AsRef<[u8]>) -> Self {
        let path = self.0.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
        self
    }

    pub(crate) fn symlink(self, target: impl Into<PathBuf>, rel: &str) -> Self {
        std::os::unix::fs::symlink(target.into(), self.0.join(rel)).unwrap();
        self
    }

    pub(crate) fn detect(&self) -> Result<Plan, PlanError> {
        detect(&self.0, &Overrides::default())
    }

    pub(crate) fn detect_with(&self, overrides: Overrides) -> Result<Plan, PlanError> {
        detect(&self.0, &overrides)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn start(command: &str) -> Overrides {
    Overrides { start_command: Some(command.into()), ..Overrides::default() }
}

pub(crate) fn pack(build_pack: BuildPack) -> Overrides {
    Overrides { build_pack, ..Overrides::default() }
}

/// Whether the plan sets `name` to `value`.
pub(crate) fn env_has(plan: &Plan, name: &str, value: &str) -> bool {
    plan.env.get(name).map(String::as_str) == Some(value)
}
