//! `[runtime] watch = true`: reload when the config file or a `.wasm` file it references
//! changes. File events are debounced (a burst of writes, as editors and `cargo build`
//! make, triggers one reload once things have been quiet for [`QUIET`]); after each reload
//! the set of watched files follows the new config.

use super::server::ServerCore;
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long files must stay unchanged before a reload.
const QUIET: Duration = Duration::from_millis(300);

/// The running watcher; dropping it stops it.
pub struct ConfigWatcher {
    stop: mpsc::Sender<WatchEvent>,
    thread: Option<std::thread::JoinHandle<()>>,
}

enum WatchEvent {
    Changed(Vec<PathBuf>),
    Stop,
}

impl ConfigWatcher {
    /// Watches the files of `core`'s serving config and reloads it when they change.
    pub fn start(core: &Arc<ServerCore>) -> notify::Result<ConfigWatcher> {
        let (tx, rx) = mpsc::channel();
        let events = tx.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event
                    && (event.kind.is_modify() || event.kind.is_create() || event.kind.is_remove())
                {
                    let _ = events.send(WatchEvent::Changed(event.paths));
                }
            })?;
        let mut files = watched_files(core);
        watch_dirs(&mut watcher, &files)?;
        let core: Weak<ServerCore> = Arc::downgrade(core);
        let thread = std::thread::Builder::new()
            .name("maitred-watch".into())
            .spawn(move || {
                while let Ok(WatchEvent::Changed(paths)) = rx.recv() {
                    if !paths.iter().any(|p| files.contains(p)) {
                        continue;
                    }
                    // Debounce: wait until nothing has changed for QUIET.
                    loop {
                        match rx.recv_timeout(QUIET) {
                            Ok(WatchEvent::Changed(_)) => continue,
                            Ok(WatchEvent::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                                return;
                            }
                            Err(mpsc::RecvTimeoutError::Timeout) => break,
                        }
                    }
                    let Some(core) = core.upgrade() else { return };
                    tracing::info!("watched files changed: reloading");
                    if core.reload().is_ok() {
                        files = watched_files(&core);
                        if let Err(e) = watch_dirs(&mut watcher, &files) {
                            tracing::warn!("cannot watch the new config's files: {e}");
                        }
                    }
                }
            })
            .map_err(notify::Error::io)?;
        Ok(ConfigWatcher {
            stop: tx,
            thread: Some(thread),
        })
    }
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        let _ = self.stop.send(WatchEvent::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The config file and every plugin's `.wasm` file, as absolute paths.
fn watched_files(core: &ServerCore) -> BTreeSet<PathBuf> {
    let snapshot = core.snapshot();
    std::iter::once(snapshot.config.source.clone())
        .chain(snapshot.config.plugins.iter().map(|p| p.wasm.clone()))
        .map(|p| std::path::absolute(&p).unwrap_or(p))
        .collect()
}

/// Watches the folders holding `files` (editors replace files, so the folder is what to
/// watch; events for other files in it are filtered out).
fn watch_dirs(watcher: &mut impl Watcher, files: &BTreeSet<PathBuf>) -> notify::Result<()> {
    let dirs: BTreeSet<&Path> = files.iter().filter_map(|f| f.parent()).collect();
    for dir in dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    Ok(())
}
