//! Container logs on disk: one file per container run, line by line with timestamps,
//! rotated at a size cap so a chatty guest cannot fill the node's disk.
//!
//! Layout: `<pod dir>/logs/<container>/<restart>.log`, each line
//! `<RFC 3339 time> <stdout|stderr> <text>` (the kubelet's CRI log format, simplified).
//! When a file passes the cap it is renamed to `<restart>.log.1` (replacing an older
//! one) and a new file starts: at most two files per run are kept.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::sync::watch;

use skiff_runtime::{LogLine, LogSink, LogStream};

/// Default size at which a log file is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// Writes one container run's output to its log file.
pub struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    file: Mutex<Option<(File, u64)>>,
    /// Counts lines written, so followers wake on new lines; dropped with the sink when
    /// the run ends, which ends their follow.
    written: watch::Sender<u64>,
}

impl FileSink {
    /// A sink writing to `path` (created with its directory on the first line),
    /// registered in `live` so that followers can wait for its lines.
    pub fn new(path: PathBuf, max_bytes: u64, live: &LiveLogs) -> FileSink {
        let (written, followers) = watch::channel(0);
        live.register(path.clone(), followers);
        FileSink {
            path,
            max_bytes,
            file: Mutex::new(None),
            written,
        }
    }

    fn write(&self, text: &str) -> std::io::Result<()> {
        let mut slot = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if slot
            .as_ref()
            .is_some_and(|(_, size)| *size >= self.max_bytes)
        {
            *slot = None;
            std::fs::rename(&self.path, rotated(&self.path))?;
        }
        if slot.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            let size = file.metadata()?.len();
            *slot = Some((file, size));
        }
        let (file, size) = slot.as_mut().expect("opened above");
        file.write_all(text.as_bytes())?;
        *size += text.len() as u64;
        Ok(())
    }
}

impl LogSink for FileSink {
    fn write_line(&self, line: LogLine) {
        let stream = match line.stream {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        };
        let time = humantime::format_rfc3339_nanos(line.time);
        if let Err(error) = self.write(&format!("{time} {stream} {}\n", line.line)) {
            tracing::warn!(%error, path = %self.path.display(), "writing a container log failed");
        }
        self.written.send_modify(|n| *n += 1);
    }
}

/// The log files still being written, for `follow`.
#[derive(Default)]
pub struct LiveLogs {
    files: Mutex<HashMap<PathBuf, watch::Receiver<u64>>>,
}

impl LiveLogs {
    fn register(&self, path: PathBuf, followers: watch::Receiver<u64>) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        // Forget the files whose runs have ended.
        files.retain(|_, rx| rx.has_changed().is_ok());
        files.insert(path, followers);
    }

    /// A receiver that changes with every line written to `path`, while it is being
    /// written; `None` if its run has ended.
    pub fn follow(&self, path: &Path) -> Option<watch::Receiver<u64>> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files
            .get(path)
            .filter(|rx| rx.has_changed().is_ok())
            .cloned()
    }
}

fn rotated(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".1");
    path.with_file_name(name)
}

/// The log file of run `restart` of `container` in the pod directory `pod_dir`.
pub fn log_path(pod_dir: &Path, container: &str, restart: u32) -> PathBuf {
    pod_dir
        .join("logs")
        .join(container)
        .join(format!("{restart}.log"))
}

/// One line read back from a log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLine {
    pub time: String,
    pub stream: String,
    pub text: String,
}

/// Reads a run's lines, the rotated file first. Also returns how far into the current
/// file it read, for following it from there.
pub fn read_lines(path: &Path) -> std::io::Result<(Vec<StoredLine>, u64)> {
    let mut lines = Vec::new();
    let mut offset = 0;
    for file in [rotated(path), path.to_path_buf()] {
        let Ok(file) = File::open(&file) else {
            continue;
        };
        offset = 0;
        for line in BufReader::new(file).lines() {
            let line = line?;
            offset += line.len() as u64 + 1;
            lines.extend(parse_line(&line));
        }
    }
    Ok((lines, offset))
}

/// The complete lines of `path` after `offset`, and the new offset. A file shorter than
/// `offset` was rotated: it is read from its start.
pub fn read_from(path: &Path, offset: u64) -> std::io::Result<(Vec<StoredLine>, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path)?;
    let start = if file.metadata()?.len() < offset {
        0
    } else {
        offset
    };
    file.seek(SeekFrom::Start(start))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    let lines = text[..complete].lines().filter_map(parse_line).collect();
    Ok((lines, start + complete as u64))
}

fn parse_line(line: &str) -> Option<StoredLine> {
    let mut parts = line.splitn(3, ' ');
    let (time, stream) = (parts.next()?, parts.next()?);
    Some(StoredLine {
        time: time.into(),
        stream: stream.into(),
        text: parts.next().unwrap_or("").into(),
    })
}

/// The runs of `container` that have log files, oldest first.
pub fn runs(pod_dir: &Path, container: &str) -> Vec<u32> {
    let mut runs: Vec<u32> = std::fs::read_dir(pod_dir.join("logs").join(container))
        .into_iter()
        .flatten()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    runs.sort_unstable();
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn line(text: &str) -> LogLine {
        LogLine {
            time: SystemTime::now(),
            stream: LogStream::Stdout,
            line: text.into(),
        }
    }

    #[test]
    fn lines_are_kept_in_order_and_rotated_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "main", 0);
        let sink = FileSink::new(path.clone(), 200, &LiveLogs::default());
        for i in 0..20 {
            sink.write_line(line(&format!("line {i}")));
        }
        let (lines, _) = read_lines(&path).unwrap();
        assert!(lines.len() < 20, "old lines were rotated away");
        assert_eq!(lines.last().unwrap().text, "line 19");
        assert!(
            lines.windows(2).all(|w| w[0].time <= w[1].time),
            "in order across the rotated file"
        );
        let on_disk: u64 = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(
            on_disk <= 2 * (200 + 60),
            "at most two capped files: {on_disk} bytes"
        );
        assert_eq!(lines[0].stream, "stdout");
    }
}
