//! Container logs on disk: one file per container run, line by line with timestamps,
//! rotated at a size cap so a chatty guest cannot fill the node's disk.
//!
//! Layout: `<pod dir>/logs/<container>/<restart>.log`, each line
//! `<RFC 3339 time> <stdout|stderr> <text>` (the kubelet's CRI log format, simplified).
//! When a file passes the cap it is renamed to `<restart>.log.1` (replacing an older
//! one) and a new file starts: at most two files per run are kept.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use skiff_runtime::{LogLine, LogSink, LogStream};

/// Default size at which a log file is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// Writes one container run's output to its log file.
pub struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    file: Mutex<Option<(File, u64)>>,
}

impl FileSink {
    /// A sink writing to `path` (created with its directory on the first line).
    pub fn new(path: PathBuf, max_bytes: u64) -> FileSink {
        FileSink {
            path,
            max_bytes,
            file: Mutex::new(None),
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

/// Reads a run's lines, the rotated file first.
pub fn read_lines(path: &Path) -> std::io::Result<Vec<StoredLine>> {
    let mut lines = Vec::new();
    for file in [rotated(path), path.to_path_buf()] {
        let Ok(file) = File::open(&file) else {
            continue;
        };
        for line in BufReader::new(file).lines() {
            let line = line?;
            let mut parts = line.splitn(3, ' ');
            let (Some(time), Some(stream)) = (parts.next(), parts.next()) else {
                continue;
            };
            lines.push(StoredLine {
                time: time.into(),
                stream: stream.into(),
                text: parts.next().unwrap_or("").into(),
            });
        }
    }
    Ok(lines)
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
        let sink = FileSink::new(path.clone(), 200);
        for i in 0..20 {
            sink.write_line(line(&format!("line {i}")));
        }
        let lines = read_lines(&path).unwrap();
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
