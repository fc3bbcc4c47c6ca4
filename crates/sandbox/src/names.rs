//! Names and addresses, derived so that parallel platform instances never collide and one instance can find
//! (and remove) everything it ever created from its tag alone.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::Error;

/// 10.201.0.0/16 cut into /30s: 16384 sandboxes per machine, across all instances.
pub(crate) const SUBNETS: u32 = 1 << 14;
const NETWORK: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 0);
/// Lease files, one per /30, shared by every instance on the machine.
pub(crate) const LEASE_DIR: &str = "/run/deploy-mcp/net";
/// A lease of another instance with neither namespace nor veth is a crash leftover once it is this old
/// (younger ones may belong to a `create` between taking the lease and adding the namespace).
const STALE_AFTER: Duration = Duration::from_secs(60);

pub(crate) fn validate_instance(instance: &str) -> Result<(), Error> {
    validate("instance", instance, 6)
}

pub(crate) fn validate_id(id: &str) -> Result<(), Error> {
    validate("sandbox id", id, 12)
}

fn validate(what: &'static str, value: &str, max: usize) -> Result<(), Error> {
    let ok = (1..=max).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid { what, reason: format!("{value:?} must be 1 to {max} characters of [a-z0-9]") })
    }
}

/// The prefix of every namespace and cgroup of an instance; the `-` after the tag keeps tag `ab` from matching
/// the names of tag `ab1`.
pub(crate) fn prefix(instance: &str) -> String {
    format!("dmcp-{instance}-")
}

/// Network namespace and cgroup name of a sandbox.
pub(crate) fn sandbox_name(instance: &str, id: &str) -> String {
    format!("{}{id}", prefix(instance))
}

/// The prefix of the host-side veths of an instance (what the firewall matches).
pub(crate) fn veth_prefix(instance: &str) -> String {
    format!("vh{instance}-")
}

/// Host-side veth of the /30 `index`: at most 2 + 6 + 1 + 5 = 14 characters (the kernel allows 15).
pub(crate) fn veth_name(instance: &str, index: u32) -> String {
    format!("{}{index}", veth_prefix(instance))
}

pub(crate) fn firewall_table(instance: &str) -> String {
    format!("dmcp_{instance}")
}

/// (host side, app side) of the /30 `index`.
pub(crate) fn addresses(index: u32) -> (Ipv4Addr, Ipv4Addr) {
    debug_assert!(index < SUBNETS);
    let base = u32::from(NETWORK) + index * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// Address leases: a file per /30 created with O_EXCL, so concurrent instances (separate processes) never hand
/// out the same subnet. A lease holds `<instance> <id>` so leftovers can be traced to their owner.
#[derive(Debug)]
pub(crate) struct Leases {
    dir: PathBuf,
    /// Where the next search starts: a freed subnet is not handed out again at once, so late packets or
    /// conntrack entries of a destroyed sandbox never meet its successor.
    cursor: AtomicU32,
}

/// One lease as found on disk.
#[derive(Debug, PartialEq)]
pub(crate) struct Lease {
    pub(crate) index: u32,
    pub(crate) instance: String,
    pub(crate) id: String,
}

impl Leases {
    pub(crate) fn open(dir: impl Into<PathBuf>, start: u32) -> Result<Self, Error> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        Ok(Leases { dir, cursor: AtomicU32::new(start % SUBNETS) })
    }

    pub(crate) fn acquire(&self, instance: &str, id: &str) -> Result<u32, Error> {
        let start = self.cursor.load(Ordering::Relaxed);
        for step in 0..SUBNETS {
            let index = (start + step) % SUBNETS;
            let path = self.path(index);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    self.cursor.store((index + 1) % SUBNETS, Ordering::Relaxed);
                    if let Err(e) = writeln!(file, "{instance} {id}") {
                        let _ = fs::remove_file(&path);
                        return Err(Error::io(format!("writing {}", path.display()), e));
                    }
                    return Ok(index);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
            }
        }
        Err(Error::AddressesExhausted)
    }

    pub(crate) fn release(&self, index: u32) -> Result<(), Error> {
        remove_if_present(&self.path(index))
    }

    /// Every lease on the machine; files being written (empty) or foreign are skipped.
    pub(crate) fn list(&self) -> Result<Vec<Lease>, Error> {
        let mut leases = Vec::new();
        for entry in read_dir(&self.dir)? {
            let Some(index) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(text) = fs::read_to_string(entry.path()) else { continue };
            let mut words = text.split_whitespace();
            if let (Some(instance), Some(id)) = (words.next(), words.next()) {
                leases.push(Lease { index, instance: instance.to_owned(), id: id.to_owned() });
            }
        }
        Ok(leases)
    }

    /// True when the lease file is older than [`STALE_AFTER`].
    pub(crate) fn is_old(&self, index: u32) -> bool {
        let age = fs::metadata(self.path(index)).and_then(|m| m.modified()).map(|t| t.elapsed().unwrap_or_default());
        age.is_ok_and(|age| age > STALE_AFTER)
    }

    fn path(&self, index: u32) -> PathBuf {
        self.dir.join(index.to_string())
    }
}

/// Entries of a directory; a missing directory has none.
pub(crate) fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, Error> {
    match fs::read_dir(dir) {
        Ok(entries) => {
            entries.collect::<Result<_, _>>().map_err(|e| Error::io(format!("reading {}", dir.display()), e))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(format!("reading {}", dir.display()), e)),
    }
}

/// Names in `dir` starting with `prefix`.
pub(crate) fn names_with_prefix(dir: &Path, prefix: &str) -> Result<Vec<String>, Error> {
    Ok(read_dir(dir)?
        .into_iter()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix))
        .collect())
}

pub(crate) fn remove_if_present(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernel_limits_and_never_overlap_between_instances() {
        assert_eq!(sandbox_name("ab1", "01j9x"), "dmcp-ab1-01j9x");
        assert_eq!(veth_name("ab1", 7), "vhab1-7");
        assert_eq!(firewall_table("ab1"), "dmcp_ab1");
        let longest = veth_name("abcdef", SUBNETS - 1);
        assert!(longest.len() <= 15, "{longest} is longer than IFNAMSIZ-1");
        // Tag `ab` must not claim the veths or namespaces of tag `ab1`.
        assert!(!veth_name("ab1", 2).starts_with(&veth_prefix("ab")));
        assert!(!sandbox_name("ab1", "x").starts_with(&prefix("ab")));
    }

    #[test]
    fn addresses_are_disjoint_slash_30s_of_10_201() {
        assert_eq!(addresses(0), (Ipv4Addr::new(10, 201, 0, 1), Ipv4Addr::new(10, 201, 0, 2)));
        assert_eq!(addresses(1), (Ipv4Addr::new(10, 201, 0, 5), Ipv4Addr::new(10, 201, 0, 6)));
        assert_eq!(addresses(64), (Ipv4Addr::new(10, 201, 1, 1), Ipv4Addr::new(10, 201, 1, 2)));
        assert_eq!(addresses(SUBNETS - 1), (Ipv4Addr::new(10, 201, 255, 253), Ipv4Addr::new(10, 201, 255, 254)));
    }

    #[test]
    fn tags_and_ids_are_checked() {
        assert!(validate_instance("a1b2c3").is_ok());
        assert!(validate_instance("").is_err());
        assert!(validate_instance("abcdefg").is_err());
        assert!(validate_instance("Ab").is_err());
        assert!(validate_instance("a-b").is_err());
        assert!(validate_id("01j9x7k2m3n4").is_ok());
        assert!(validate_id("01j9x7k2m3n4p").is_err());
        assert!(validate_id("../x").is_err());
    }

    #[test]
    fn leases_are_exclusive_and_record_their_owner() {
        let dir = std::env::temp_dir().join(format!("dmcp-leases-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let a = Leases::open(&dir, SUBNETS - 1).unwrap();
        let b = Leases::open(&dir, SUBNETS - 1).unwrap();
        // The search wraps around the end of the range, and a second allocator skips what the first holds.
        assert_eq!(a.acquire("one", "x").unwrap(), SUBNETS - 1);
        assert_eq!(b.acquire("two", "y").unwrap(), 0);
        assert_eq!(a.acquire("one", "z").unwrap(), 1);
        let mut leases = a.list().unwrap();
        leases.sort_by_key(|l| l.index);
        assert_eq!(
            leases,
            vec![
                Lease { index: 0, instance: "two".into(), id: "y".into() },
                Lease { index: 1, instance: "one".into(), id: "z".into() },
                Lease { index: SUBNETS - 1, instance: "one".into(), id: "x".into() },
            ]
        );
        a.release(0).unwrap();
        a.release(0).unwrap();
        assert!(!a.is_old(1));
        assert_eq!(a.list().unwrap().len(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }
}
