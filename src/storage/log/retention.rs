//! Trim and retention of a `Log`: moving the log start and deleting whole segments, crash-safe and
//! on a full disk (deletions first, then anything that needs space). Never appends or reads.

use super::*;

impl Log {
    /// Makes `offset` the log start: reads below it fail with `OffsetOutOfRange`, and segments
    /// entirely below it are deleted. Persisted (a checkpoint file, when `offset` is not where a
    /// segment starts). Returns the log start offset after the call (unchanged if `offset` is not
    /// above it).
    ///
    /// Works on a full disk: whole segments are deleted first, which needs no new space, and only
    /// then is anything written (a roll, the checkpoint), with the space they freed. A crash at
    /// any point leaves a log start between the old one and `offset` (recovery starts the log at
    /// its first segment, or the checkpoint if later), and the in-memory start moves only past
    /// what is already that durable, so no reader is ever told a record is gone that a restart
    /// would bring back. If the checkpoint cannot be written, the error is returned and the log
    /// starts at the first remaining segment.
    pub fn trim_before(&self, offset: u64) -> Result<u64, StorageError> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        self.check_open()?;
        let next = self.next_offset();
        let current = self.log_start_offset();
        if offset > next {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: current,
                next_offset: next,
            });
        }
        if offset <= current {
            return Ok(current);
        }
        // The checkpoint must never point past what is durable, or a crash could make offsets
        // below it be handed out again.
        self.sync()?;
        let sealed_below = || -> Vec<Arc<Segment>> {
            let segs = self.segments_snapshot();
            let sealed = &segs[..segs.len() - 1];
            sealed.iter().take_while(|s| s.next_offset() <= offset).cloned().collect()
        };
        self.delete_oldest(&sealed_below())?;
        // If the whole active segment is below the new start, roll (with the space just freed)
        // so it can go too.
        let active = self.active();
        if !active.is_empty() && active.next_offset() <= offset {
            let mut app = self.lock_appender()?;
            let active = self.active();
            if !active.is_empty() && active.next_offset() <= offset {
                self.roll(&mut app, 0)?;
            }
            drop(app);
            self.delete_oldest(&sealed_below())?;
        }
        // Inside the first remaining segment: only the checkpoint can keep the start there.
        if offset > self.log_start_offset() {
            recovery::write_checkpoint(&*self.fs, &self.dir, offset)?;
            self.log_start.fetch_max(offset, Ordering::AcqRel);
        }
        Ok(self.log_start_offset())
    }

    /// Deletes the oldest sealed segments while the log breaks its retention limits (size, age
    /// of the newest record against `now_ms`). Never the active segment. Returns how many.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        self.check_open()?;
        let config = self.config();
        // Only `cleanup.policy=delete` deletes by age or size: a compact-only log keeps every
        // key's latest record however old (deleting it would lose data the topic promises).
        if !config.cleanup_policy.delete
            || (config.retention_bytes.is_none() && config.retention_ms.is_none())
        {
            return Ok(0);
        }
        let segs = self.segments_snapshot();
        let mut total: u64 = segs.iter().map(|s| s.len() as u64).sum();
        let mut victims = Vec::new();
        for seg in &segs[..segs.len() - 1] {
            let too_big = config.retention_bytes.is_some_and(|max| total > max);
            let too_old = config.retention_ms.is_some_and(|ms| {
                let newest = seg.max_timestamp();
                newest == i64::MIN || now_ms.saturating_sub(newest) > ms as i64
            });
            if !(too_big || too_old) {
                break;
            }
            total -= seg.len() as u64;
            victims.push(seg.clone());
        }
        self.delete_oldest(&victims)?;
        Ok(victims.len())
    }

    /// Removes `victims` (the oldest segments, in order) from the list, deletes their files,
    /// then advances the log start past them: only once their removal is durable, so a restart
    /// never brings back records a reader was told are gone. Readers holding one keep their
    /// mapping. Needs no disk space.
    fn delete_oldest(&self, victims: &[Arc<Segment>]) -> Result<(), StorageError> {
        let Some(last) = victims.last() else { return Ok(()) };
        {
            let mut segs = self.segments.write().unwrap_or_else(|p| p.into_inner());
            segs.retain(|s| !victims.iter().any(|v| Arc::ptr_eq(s, v)));
        }
        let res = self.delete_files(victims);
        // Even after a failed delete: the segments are out of the list, nothing below serves.
        self.log_start.fetch_max(last.next_offset(), Ordering::AcqRel);
        res
    }

    fn delete_files(&self, victims: &[Arc<Segment>]) -> Result<(), StorageError> {
        for seg in victims {
            // Out of the cache of open segments, so its space is freed when the file goes.
            seg.release();
            tracing::info!(path = %seg.log_path.display(), "deleting segment");
            // Log file first: an index or time index left alone by a crash is swept at open, a
            // log without them gets them rebuilt.
            self.fs
                .remove_file(&seg.log_path)
                .map_err(StorageError::io(&seg.log_path, "delete segment"))?;
            for (path, op) in
                [(&seg.index_path, "delete index"), (&seg.time_index_path, "delete time index")]
            {
                match self.fs.remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StorageError::io(path, op)(e)),
                }
            }
        }
        self.fs.sync_dir(&self.dir).map_err(StorageError::io(&self.dir, "fsync log directory"))
    }
}
