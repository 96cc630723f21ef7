//! The disk seam: named files with explicit durability.
//!
//! The shape follows what an embedded store needs (it is the same as redb's
//! `StorageBackend`): positional reads and writes, `set_len`, and `sync_data`,
//! the only operation after which data is durable. A write that was not
//! followed by a successful `sync_data` may be lost or torn by a crash; the
//! simulator's disk does exactly that, from the seed.
//!
//! [`OsDisk`] is the production implementation over a directory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The longest file name a [`Disk`] accepts, in bytes.
pub const DISK_FILE_NAME_BYTES_MAX: usize = 128;

/// A disk operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiskError {
    /// The operating system (or the simulated disk) reported an I/O error.
    #[error("{operation} on {file:?} failed: {message}")]
    Io {
        /// The file the operation was on.
        file: String,
        /// The operation: `open`, `read`, `write`, `set_len`, `sync_data`, `remove`.
        operation: &'static str,
        /// What the system said.
        message: String,
    },
    /// A read asked for bytes beyond the end of the file.
    #[error("read of {len} bytes at offset {offset} is past the end of {file:?} ({file_len} bytes)")]
    ReadPastEnd {
        /// The file read.
        file: String,
        /// Where the read started.
        offset: u64,
        /// How many bytes were asked for.
        len: usize,
        /// The file's length.
        file_len: u64,
    },
    /// The file name is empty, too long, or not `[A-Za-z0-9._-]`.
    #[error(
        "invalid file name {name:?}: use 1..={DISK_FILE_NAME_BYTES_MAX} bytes of [A-Za-z0-9._-], not starting with '.'"
    )]
    InvalidName {
        /// The rejected name.
        name: String,
    },
}

/// Checks a file name for [`Disk::open`]: flat names only, so a file can
/// never escape its disk's directory.
pub fn validate_file_name(name: &str) -> Result<(), DiskError> {
    let valid = !name.is_empty()
        && name.len() <= DISK_FILE_NAME_BYTES_MAX
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(DiskError::InvalidName { name: name.to_string() })
    }
}

/// One open file.
pub trait DiskFile: Send + Sync + fmt::Debug + 'static {
    /// The file's current length in bytes (including unsynced writes).
    fn len(&self) -> Result<u64, DiskError>;

    /// Whether the file is empty.
    fn is_empty(&self) -> Result<bool, DiskError> {
        Ok(self.len()? == 0)
    }

    /// Reads exactly `len` bytes at `offset`.
    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, DiskError>;

    /// Writes `data` at `offset`, extending the file if needed. Not durable
    /// until [`DiskFile::sync_data`] returns `Ok`.
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), DiskError>;

    /// Truncates or zero-extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> Result<(), DiskError>;

    /// Makes every earlier write durable. On error, durability of earlier
    /// writes is unknown.
    fn sync_data(&self) -> Result<(), DiskError>;
}

/// A set of named files (one per node).
pub trait Disk: Send + Sync + fmt::Debug + 'static {
    /// Opens `name`, creating it empty if it does not exist.
    fn open(&self, name: &str) -> Result<Arc<dyn DiskFile>, DiskError>;

    /// Whether `name` exists.
    fn exists(&self, name: &str) -> Result<bool, DiskError>;
}

/// A shared disk handle.
pub type SharedDisk = Arc<dyn Disk>;

/// Files in one directory of the real file system.
#[derive(Debug, Clone)]
pub struct OsDisk {
    dir: PathBuf,
}

impl OsDisk {
    /// A disk over `dir`, creating the directory if needed.
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<Self, DiskError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|error| io_error(&dir.display().to_string(), "open", &error))?;
        Ok(Self { dir })
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn io_error(file: &str, operation: &'static str, error: &std::io::Error) -> DiskError {
    DiskError::Io {
        file: file.to_string(),
        operation,
        message: error.to_string(),
    }
}

impl Disk for OsDisk {
    fn open(&self, name: &str) -> Result<Arc<dyn DiskFile>, DiskError> {
        validate_file_name(name)?;
        let path = self.dir.join(name);
        let existed = path.exists();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|error| io_error(name, "open", &error))?;
        if !existed {
            // A new file's directory entry is durable only once the directory is synced.
            let dir = std::fs::File::open(&self.dir).map_err(|error| io_error(name, "open", &error))?;
            dir.sync_all().map_err(|error| io_error(name, "sync_data", &error))?;
        }
        Ok(Arc::new(OsFile {
            name: name.to_string(),
            file,
        }))
    }

    fn exists(&self, name: &str) -> Result<bool, DiskError> {
        validate_file_name(name)?;
        Ok(self.dir.join(name).exists())
    }
}

/// A file of [`OsDisk`].
#[derive(Debug)]
struct OsFile {
    name: String,
    file: std::fs::File,
}

impl DiskFile for OsFile {
    fn len(&self) -> Result<u64, DiskError> {
        self.file
            .metadata()
            .map(|metadata| metadata.len())
            .map_err(|error| io_error(&self.name, "len", &error))
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, DiskError> {
        use std::os::unix::fs::FileExt;
        let file_len = self.len()?;
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|end| end > file_len) {
            return Err(DiskError::ReadPastEnd {
                file: self.name.clone(),
                offset,
                len,
                file_len,
            });
        }
        let mut buffer = vec![0; len];
        self.file
            .read_exact_at(&mut buffer, offset)
            .map_err(|error| io_error(&self.name, "read", &error))?;
        Ok(buffer)
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        use std::os::unix::fs::FileExt;
        self.file
            .write_all_at(data, offset)
            .map_err(|error| io_error(&self.name, "write", &error))
    }

    fn set_len(&self, len: u64) -> Result<(), DiskError> {
        self.file
            .set_len(len)
            .map_err(|error| io_error(&self.name, "set_len", &error))
    }

    fn sync_data(&self) -> Result<(), DiskError> {
        self.file
            .sync_data()
            .map_err(|error| io_error(&self.name, "sync_data", &error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_disk_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = OsDisk::open_dir(dir.path()).expect("open dir");
        let file = disk.open("state.bin").expect("open file");
        assert_eq!(file.len(), Ok(0));
        file.write(4, b"kelpie").expect("write");
        file.sync_data().expect("sync");
        assert_eq!(file.len(), Ok(10));
        assert_eq!(file.read(4, 6), Ok(b"kelpie".to_vec()));
        assert_eq!(file.read(0, 4), Ok(vec![0; 4]));
        assert_eq!(
            file.read(8, 4),
            Err(DiskError::ReadPastEnd {
                file: "state.bin".into(),
                offset: 8,
                len: 4,
                file_len: 10
            })
        );
        file.set_len(2).expect("truncate");
        assert_eq!(file.len(), Ok(2));
        assert_eq!(disk.exists("state.bin"), Ok(true));
        assert_eq!(disk.exists("other"), Ok(false));
    }

    #[test]
    fn file_names_cannot_escape() {
        for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(129)] {
            assert_eq!(
                validate_file_name(bad),
                Err(DiskError::InvalidName { name: bad.to_string() }),
                "{bad:?}"
            );
        }
        assert_eq!(validate_file_name("journal-0001.log"), Ok(()));
    }
}
