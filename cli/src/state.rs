//! What an upload in progress leaves on disk, so that a second run of
//! `imagegram post FILE` (after a crash, a `kill -9`, a lost network) finds
//! it and sends only what S3 lacks. One JSON file per upload in the state
//! directory (`$XDG_STATE_HOME/imagegram/uploads`, or `IMAGEGRAM_STATE_DIR`),
//! written before the first request that creates anything.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::Failure;

/// Which file this is: path, size, modification time and a hash of its
/// first MiB. A file changed since is another file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: u128,
    pub head_sha256: String,
}

impl FileIdentity {
    pub fn of(path: &Path) -> Result<Self, Failure> {
        let path = path
            .canonicalize()
            .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
        let meta = std::fs::metadata(&path)
            .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(Failure::usage(format!("{} is not a file", path.display())));
        }
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut head = Vec::with_capacity(1 << 20);
        std::fs::File::open(&path)
            .and_then(|f| f.take(1 << 20).read_to_end(&mut head))
            .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
        Ok(FileIdentity {
            path,
            size: meta.len(),
            mtime_ns,
            head_sha256: hex(&sha2::Sha256::digest(&head)),
        })
    }
}

/// One upload, as far as it got.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UploadState {
    pub api: String,
    pub file: FileIdentity,
    pub caption: String,
    pub content_type: String,
    /// Sent with `POST /posts`, and with its retries: one post however
    /// often the create is tried.
    pub idempotency_key: String,
    /// Known once `POST /posts` answered.
    pub post_id: Option<String>,
    pub part_size: Option<u64>,
    pub part_count: Option<u32>,
}

pub fn dir() -> Result<PathBuf, Failure> {
    let base = match std::env::var_os("IMAGEGRAM_STATE_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let dirs = directories::ProjectDirs::from("", "", "imagegram")
                .ok_or_else(|| Failure::usage("no home directory for the upload state"))?;
            dirs.state_dir()
                .unwrap_or_else(|| dirs.data_local_dir())
                .to_path_buf()
        }
    };
    let d = base.join("uploads");
    std::fs::create_dir_all(&d).map_err(|e| Failure::usage(format!("{}: {e}", d.display())))?;
    Ok(d)
}

impl UploadState {
    fn file_name(&self) -> String {
        let mut h = sha2::Sha256::new();
        h.update(self.api.as_bytes());
        h.update(self.file.path.to_string_lossy().as_bytes());
        h.update(self.file.size.to_le_bytes());
        h.update(self.file.mtime_ns.to_le_bytes());
        h.update(self.file.head_sha256.as_bytes());
        format!("{}.json", &hex(&h.finalize())[..24])
    }

    /// Writes the state (to a temporary file, then renamed: a crash leaves
    /// the old state or the new, never half of one).
    pub fn save(&self) -> Result<(), Failure> {
        let d = dir()?;
        let tmp = d.join(format!(".{}.tmp", self.file_name()));
        let body = serde_json::to_vec_pretty(self).expect("state serialises");
        std::fs::write(&tmp, body)
            .and_then(|()| std::fs::rename(&tmp, d.join(self.file_name())))
            .map_err(|e| Failure::usage(format!("cannot save the upload state: {e}")))
    }

    pub fn remove(&self) {
        if let Ok(d) = dir() {
            let _ = std::fs::remove_file(d.join(self.file_name()));
        }
    }

    /// Every upload left on this machine.
    pub fn all() -> Result<Vec<UploadState>, Failure> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir()?).map_err(|e| Failure::usage(e.to_string()))? {
            let Ok(entry) = entry else { continue };
            if entry.path().extension().is_some_and(|e| e == "json")
                && let Ok(text) = std::fs::read(entry.path())
                && let Ok(state) = serde_json::from_slice::<UploadState>(&text)
            {
                out.push(state);
            }
        }
        Ok(out)
    }

    /// The upload of this very file to this API, if one was started.
    pub fn find(api: &str, file: &FileIdentity) -> Result<Option<UploadState>, Failure> {
        Ok(Self::all()?
            .into_iter()
            .find(|s| s.api == api && s.file == *file))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
