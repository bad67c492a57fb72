//! The recorder's on-disk spool: append-only JSON Lines files of events that
//! could not be delivered yet.
//!
//! Each recorder appends to its own file, `<instance>.jsonl`, so two
//! recorders sharing a directory never interleave writes. To replay, a file
//! is first renamed to `<name>.replaying` (so new spills go to a fresh
//! file), its events are delivered, and then it is deleted. Files left by a
//! recorder that crashed or was dropped — `*.jsonl` and `*.replaying` alike —
//! are replayed by the next recorder started on the directory. Replaying an
//! event twice is harmless: recording is idempotent by event id.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::error::{Error, ErrorKind, Result};
use crate::model::UsageEvent;

/// When the spool file is flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SpoolSync {
    /// `fsync` after every append: a spilled event survives a power loss.
    /// The default; spilling only happens while the backend is down, so its
    /// cost is paid rarely.
    #[default]
    EveryWrite,
    /// Leave flushing to the operating system: survives a process crash,
    /// not a power loss.
    Never,
}

#[derive(Debug)]
pub(super) struct Spool {
    dir: PathBuf,
    instance: Uuid,
    sync: SpoolSync,
    /// The file this recorder appends to, opened lazily.
    current: Option<File>,
    /// Events `record` spilled into `current` (see [`Spool::spill`]).
    current_spilled: u64,
    /// How many replay files this instance has cut, for unique names.
    cuts: u64,
    /// Replay files cut from this instance's own file and not finished,
    /// with the events `record` spilled into each.
    own_cuts: HashMap<PathBuf, u64>,
}

/// A spool file moved aside for replay.
#[derive(Debug)]
pub(super) struct ReplayFile {
    pub(super) path: PathBuf,
    /// How many of its events this recorder's `record` spilled, for
    /// `flush`: decided when the file is cut, as names say nothing of
    /// whose events a file holds.
    pub(super) spilled: u64,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("spool: {what} {}", path.display()),
    )
    .with_source(e)
}

impl Spool {
    pub(super) fn open(dir: &Path, instance: Uuid, sync: SpoolSync) -> Result<Spool> {
        fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
        Ok(Spool {
            dir: dir.to_owned(),
            instance,
            sync,
            current: None,
            current_spilled: 0,
            cuts: 0,
            own_cuts: HashMap::new(),
        })
    }

    fn current_path(&self) -> PathBuf {
        self.dir.join(format!("{}.jsonl", self.instance))
    }

    /// A new, unique name for a replay file.
    fn next_cut(&mut self) -> PathBuf {
        self.cuts += 1;
        self.dir
            .join(format!("{}-{}.replaying", self.instance, self.cuts))
    }

    /// Appends an event `record` could not queue (memory is full); `flush`
    /// waits for the spilled events to be replayed.
    pub(super) fn spill(&mut self, event: &UsageEvent) -> Result<()> {
        self.append([event])?;
        self.current_spilled += 1;
        Ok(())
    }

    /// Appends events, one JSON object per line, and syncs per the policy.
    pub(super) fn append<'a>(
        &mut self,
        events: impl IntoIterator<Item = &'a UsageEvent>,
    ) -> Result<usize> {
        let path = self.current_path();
        if self.current.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io_error("cannot open", &path, e))?;
            // Held while the file is open: tells other recorders sharing the
            // directory that this file is alive and not theirs to replay.
            file.lock().map_err(|e| io_error("cannot lock", &path, e))?;
            self.current = Some(file);
        }
        let mut buffer = Vec::new();
        let mut count = 0;
        for event in events {
            serde_json::to_writer(&mut buffer, event).map_err(|e| {
                Error::new(ErrorKind::Unexpected, "spool: event does not serialize").with_source(e)
            })?;
            buffer.push(b'\n');
            count += 1;
        }
        let Some(file) = self.current.as_mut() else {
            return Err(Error::unexpected("spool: the file opened above is gone"));
        };
        file.write_all(&buffer)
            .map_err(|e| io_error("cannot write", &path, e))?;
        if self.sync == SpoolSync::EveryWrite {
            file.sync_data()
                .map_err(|e| io_error("cannot sync", &path, e))?;
        }
        Ok(count)
    }

    /// Moves every spooled file aside for replay — this instance's current
    /// file and any left by others — and returns them, each with the
    /// events this instance spilled into it.
    pub(super) fn take_for_replay(&mut self) -> Result<Vec<ReplayFile>> {
        if let Some(file) = self.current.take() {
            let path = self.current_path();
            let target = self.next_cut();
            if let Err(e) = fs::rename(&path, &target) {
                self.current = Some(file);
                return Err(io_error("cannot move", &path, e));
            }
            let spilled = std::mem::take(&mut self.current_spilled);
            self.own_cuts.insert(target, spilled);
        }
        let entries = fs::read_dir(&self.dir).map_err(|e| io_error("cannot list", &self.dir, e))?;
        let mut files = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("replaying") => {
                    let spilled = self.own_cuts.get(&path).copied().unwrap_or(0);
                    files.push(ReplayFile { path, spilled });
                }
                Some("jsonl") => {
                    if is_locked_by_a_live_recorder(&path) {
                        continue;
                    }
                    let target = self.next_cut();
                    fs::rename(&path, &target).map_err(|e| io_error("cannot move", &path, e))?;
                    files.push(ReplayFile {
                        path: target,
                        spilled: 0,
                    });
                }
                _ => {}
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// A replay file is done with (delivered, then removed): how many of
    /// its events this instance spilled.
    pub(super) fn finished(&mut self, path: &Path) -> u64 {
        self.own_cuts.remove(path).unwrap_or(0)
    }

    /// Whether any spooled file is waiting, this instance's or another's.
    pub(super) fn has_pending(&self) -> bool {
        fs::read_dir(&self.dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                matches!(
                    e.path().extension().and_then(|x| x.to_str()),
                    Some("jsonl" | "replaying")
                )
            })
        })
    }
}

/// A spool file's events, and how many of its lines were unreadable.
#[derive(Debug, Default)]
pub(super) struct SpoolContents {
    pub(super) events: Vec<UsageEvent>,
    /// Lines that are not an event: torn by a crash mid-append, or not
    /// valid UTF-8 or JSON. Each was skipped with an error log.
    pub(super) unreadable: u64,
}

/// Reads a spool file. A line that does not parse is skipped with an error
/// log and counted; the lines around it are kept.
pub(super) fn read_events(path: &Path) -> Result<SpoolContents> {
    let bytes = fs::read(path).map_err(|e| io_error("cannot read", path, e))?;
    Ok(parse_events(path, &bytes))
}

fn parse_events(path: &Path, bytes: &[u8]) -> SpoolContents {
    let mut contents = SpoolContents::default();
    for (number, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        match serde_json::from_slice::<UsageEvent>(line) {
            Ok(event) => contents.events.push(event),
            Err(e) => {
                contents.unreadable += 1;
                tracing::error!(path = %path.display(), line = number + 1, error = %e,
                    "spool: skipping an unreadable line");
            }
        }
    }
    contents
}

/// Deletes a replayed file. Already gone is fine: another recorder replayed
/// it too (harmless, recording is idempotent).
pub(super) fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_error("cannot remove", path, e))
        }
        _ => Ok(()),
    }
}

/// Whether another recorder holds the lock on `path` (it is still
/// appending to it).
fn is_locked_by_a_live_recorder(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => false,
        Err(fs::TryLockError::WouldBlock) => true,
        Err(fs::TryLockError::Error(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::OrgId;

    /// A fresh directory under the system's temporary one, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let dir = std::env::temp_dir().join(format!("tenancy-spool-{}", Uuid::new_v4()));
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn line(tokens: u64) -> Vec<u8> {
        let event = UsageEvent::new(OrgId::new_v7()).tokens(tokens, 0, 0);
        let mut line = serde_json::to_vec(&event).unwrap();
        line.push(b'\n');
        line
    }

    /// A torn line, bytes that are not UTF-8 and a line that is not an
    /// event are each skipped and counted; every whole line around them
    /// is read, once.
    #[test]
    fn unreadable_lines_are_skipped_and_the_rest_kept() {
        let torn = line(2);
        let mut bytes = line(1);
        bytes.extend_from_slice(&torn[..torn.len() / 2]);
        bytes.push(b'\n');
        bytes.extend_from_slice(b"\xff\xfe{\"org\": 1}\n");
        bytes.extend_from_slice(b"\n  \n");
        bytes.extend_from_slice(&line(3));
        bytes.extend_from_slice(b"[1, 2]\n");
        bytes.extend_from_slice(&line(4));
        // The last append was torn too: no newline.
        bytes.extend_from_slice(&torn[..torn.len() - 3]);
        let contents = parse_events(Path::new("test.jsonl"), &bytes);
        let tokens: Vec<u128> = contents.events.iter().map(UsageEvent::total_tokens).collect();
        assert_eq!(tokens, [1, 3, 4]);
        assert_eq!(contents.unreadable, 4);
    }

    #[test]
    fn a_file_of_invalid_utf8_reads_without_an_error() {
        let dir = TempDir::new();
        let path = dir.0.join("x.jsonl");
        let mut bytes = vec![0xc3, 0x28, b'\n'];
        bytes.extend_from_slice(&line(7));
        fs::write(&path, &bytes).unwrap();
        let contents = read_events(&path).unwrap();
        assert_eq!(contents.events.len(), 1);
        assert_eq!(contents.unreadable, 1);
    }
}
