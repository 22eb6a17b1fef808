//! Small durable-file helpers for the broker's own state (topic.json, group offsets): write a
//! file through a temp file + fsync + rename + fsync of the directory, so a crash leaves either
//! the old or the new content, never a torn mix. Never touches partition logs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::BrokerError;

/// Suffix of a temp file that a crash may leave behind; swept at start-up.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

fn io_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> BrokerError {
    let path = path.to_path_buf();
    move |source| BrokerError::Io { path, op, source }
}

/// Fsyncs a directory so that entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), BrokerError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir, "fsync directory"))
}

/// Replaces `path` with `contents` atomically and durably.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), BrokerError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_err(&tmp, "create"))?;
    f.write_all(contents).map_err(io_err(&tmp, "write"))?;
    f.sync_all().map_err(io_err(&tmp, "fsync"))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path, "rename temp file onto"))?;
    sync_dir(parent_dir(path))
}

/// The directory holding `path`: "." for a bare relative name like `mydata`, whose
/// `Path::parent` is the empty path (which cannot be opened to fsync).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates a directory (and parents) if missing, then fsyncs its parent so the entry is durable.
pub(crate) fn create_dir_durably(dir: &Path) -> Result<(), BrokerError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_err(dir, "create directory"))?;
    sync_dir(parent_dir(dir))
}

#[cfg(test)]
mod parent_tests {
    use super::*;

    #[test]
    fn a_bare_relative_name_has_the_working_directory_as_parent() {
        assert_eq!(parent_dir(Path::new("mydata")), Path::new("."));
        assert_eq!(parent_dir(Path::new("a/b")), Path::new("a"));
        assert_eq!(parent_dir(Path::new("/x")), Path::new("/"));
    }
}
