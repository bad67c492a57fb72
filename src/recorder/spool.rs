//! The recorder's on-disk spool: append-only JSON Lines files of events that
//! could not be delivered yet.
//!
//! Each recorder appends to its own file, `<instance>.jsonl`, so two
//! recorders sharing a directory never interleave writes. To replay, a file
//! is first renamed to `<instance>-<n>.replaying` (so new spills go to a
//! fresh file), its events are delivered, and then it is deleted. A
//! recorder holds an exclusive lock on every file it appends to or
//! replays, so recorders sharing a directory — in one process or several —
//! take each file once. Files left by a recorder that crashed or was
//! dropped — `*.jsonl` and `*.replaying` alike, no longer locked — are
//! replayed by the next recorder that looks. Replaying an event twice is
//! harmless: recording is idempotent by event id.

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
    /// Events and bytes appended to `current`.
    current_events: u64,
    current_bytes: u64,
    /// How many replay files this instance has cut, for unique names.
    cuts: u64,
    /// Replay files this instance has taken and not finished, each with
    /// its open handle, whose lock tells other recorders sharing the
    /// directory that the file is being replayed, and the events `record`
    /// spilled into it.
    held: HashMap<PathBuf, Held>,
}

#[derive(Debug)]
struct Held {
    /// Locked: dropping it lets other recorders take the file.
    _lock: File,
    spilled: u64,
    /// The events in it, as far as known: those this instance appended,
    /// or all of them once it was read for replay.
    events: u64,
    bytes: u64,
}

/// What a recorder holds in its spool: the file it appends to and those it
/// has taken for replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SpoolUsage {
    pub(super) files: u64,
    pub(super) bytes: u64,
    /// The events in them, as far as known (see [`Held::events`]).
    pub(super) events: u64,
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
            current_events: 0,
            current_bytes: 0,
            cuts: 0,
            held: HashMap::new(),
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
        self.current_events += count as u64;
        self.current_bytes += buffer.len() as u64;
        if self.sync == SpoolSync::EveryWrite {
            file.sync_data()
                .map_err(|e| io_error("cannot sync", &path, e))?;
        }
        Ok(count)
    }

    /// Moves every spooled file aside for replay — this instance's current
    /// file and any left by others — and returns them, each with the
    /// events this instance spilled into it. Every file returned is locked
    /// until [`finished`](Self::finished); files another live recorder
    /// appends to or replays are left to it.
    pub(super) fn take_for_replay(&mut self) -> Result<Vec<ReplayFile>> {
        if let Some(file) = self.current.take() {
            // Moved while still locked, so no other recorder can take it
            // between the unlock and the move.
            let path = self.current_path();
            let target = self.next_cut();
            if let Err(e) = fs::rename(&path, &target) {
                self.current = Some(file);
                return Err(io_error("cannot move", &path, e));
            }
            let spilled = std::mem::take(&mut self.current_spilled);
            self.held.insert(
                target,
                Held {
                    _lock: file,
                    spilled,
                    events: std::mem::take(&mut self.current_events),
                    bytes: std::mem::take(&mut self.current_bytes),
                },
            );
        }
        let entries = fs::read_dir(&self.dir).map_err(|e| io_error("cannot list", &self.dir, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if self.held.contains_key(&path) {
                continue;
            }
            let extension = path.extension().and_then(|e| e.to_str());
            if !matches!(extension, Some("jsonl" | "replaying")) {
                continue;
            }
            let Some(lock) = lock_for_replay(&path) else {
                continue;
            };
            let bytes = lock.metadata().map_or(0, |m| m.len());
            let path = if extension == Some("jsonl") {
                let target = self.next_cut();
                match fs::rename(&path, &target) {
                    Ok(()) => target,
                    // Taken by another recorder after our look.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error("cannot move", &path, e)),
                }
            } else {
                path
            };
            self.held.insert(
                path,
                Held {
                    _lock: lock,
                    spilled: 0,
                    events: 0,
                    bytes,
                },
            );
        }
        let mut files: Vec<ReplayFile> = self
            .held
            .iter()
            .map(|(path, held)| ReplayFile {
                path: path.clone(),
                spilled: held.spilled,
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// A replay file is done with (delivered, then removed): unlocks it and
    /// says how many of its events this instance spilled.
    pub(super) fn finished(&mut self, path: &Path) -> u64 {
        self.held.remove(path).map_or(0, |held| held.spilled)
    }

    /// A replay file was read: it holds `events` events.
    pub(super) fn read(&mut self, path: &Path, events: u64) {
        if let Some(held) = self.held.get_mut(path) {
            held.events = events;
        }
    }

    /// The files this instance holds now, their bytes and their events.
    pub(super) fn usage(&self) -> SpoolUsage {
        let mut usage = SpoolUsage {
            files: u64::from(self.current.is_some()),
            bytes: self.current_bytes,
            events: self.current_events,
        };
        for held in self.held.values() {
            usage.files += 1;
            usage.bytes += held.bytes;
            usage.events += held.events;
        }
        usage
    }

    /// Whether a spooled file waits for this instance to replay it: one it
    /// holds, or one no other live recorder holds. Its own current file is
    /// not looked at: spilling into it says so.
    pub(super) fn has_pending(&self) -> bool {
        if !self.held.is_empty() {
            return true;
        }
        let current = self.current_path();
        fs::read_dir(&self.dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let path = e.path();
                matches!(
                    path.extension().and_then(|x| x.to_str()),
                    Some("jsonl" | "replaying")
                ) && path != current
                    && !is_held_by_another(&path)
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

/// Opens and locks `path` for replay; `None` if another live recorder
/// holds it (appending to it or replaying it), or it is gone, or the file
/// at `path` changed before it was locked. On a file system without locks
/// the file is taken unlocked: a file replayed twice counts once.
fn lock_for_replay(path: &Path) -> Option<File> {
    let file = File::open(path).ok()?;
    match file.try_lock() {
        Ok(()) | Err(fs::TryLockError::Error(_)) => {}
        Err(fs::TryLockError::WouldBlock) => return None,
    }
    same_file(&file, path).then_some(file)
}

/// Whether another live recorder holds the lock on `path`.
fn is_held_by_another(path: &Path) -> bool {
    File::open(path).is_ok_and(|file| matches!(file.try_lock(), Err(fs::TryLockError::WouldBlock)))
}

/// Whether `file` is still the file at `path` (it was not moved away, and
/// another put in its place, between opening and locking it).
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
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
        let tokens: Vec<u128> = contents
            .events
            .iter()
            .map(UsageEvent::total_tokens)
            .collect();
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

    fn spool(dir: &TempDir) -> Spool {
        Spool::open(&dir.0, Uuid::new_v4(), SpoolSync::Never).unwrap()
    }

    /// Two recorders on one directory (two handles lock like two
    /// processes): a file one of them replays is not the other's, until
    /// the first goes away without finishing it.
    #[test]
    fn a_file_one_recorder_replays_is_not_anothers() {
        let dir = TempDir::new();
        let event = UsageEvent::new(OrgId::new_v7());
        let mut a = spool(&dir);
        let mut b = spool(&dir);
        assert_eq!(a.usage(), SpoolUsage::default());
        a.spill(&event).unwrap();
        a.spill(&event).unwrap();
        b.append([&event]).unwrap();
        // Left by recorders that crashed.
        let json = serde_json::to_vec(&event).unwrap();
        let line = json.len() as u64 + 1;
        fs::write(dir.0.join(format!("{}.jsonl", Uuid::new_v4())), &json).unwrap();
        fs::write(dir.0.join(format!("{}-1.replaying", Uuid::new_v4())), &json).unwrap();
        let own = SpoolUsage {
            files: 1,
            bytes: 2 * line,
            events: 2,
        };
        assert_eq!(a.usage(), own);

        let taken = a.take_for_replay().unwrap();
        assert_eq!(taken.len(), 3, "its own and the two crashed: {taken:?}");
        assert_eq!(taken.iter().map(|f| f.spilled).sum::<u64>(), 2);
        // The crashed files' events are known once they are read.
        let with_crashed = SpoolUsage {
            files: 3,
            bytes: 2 * line + 2 * (line - 1),
            events: 2,
        };
        assert_eq!(a.usage(), with_crashed);
        for file in &taken {
            a.read(
                &file.path,
                read_events(&file.path).unwrap().events.len() as u64,
            );
        }
        assert_eq!(a.usage().events, 4);
        assert!(
            !b.has_pending(),
            "everything else is held by a or is b's own"
        );
        let theirs = b.take_for_replay().unwrap();
        assert_eq!(theirs.len(), 1, "only its own file: {theirs:?}");
        assert_eq!(theirs[0].spilled, 0);

        // `a` finishes one file and goes away without finishing the rest.
        remove(&taken[0].path).unwrap();
        a.finished(&taken[0].path);
        drop(a);
        assert!(b.has_pending());
        let adopted = b.take_for_replay().unwrap();
        assert_eq!(adopted.len(), 3, "b's own and a's two left: {adopted:?}");
        assert_eq!(adopted.iter().map(|f| f.spilled).sum::<u64>(), 0);
        for file in adopted {
            remove(&file.path).unwrap();
            b.finished(&file.path);
        }
        assert!(!b.has_pending());
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 0);
    }
}
