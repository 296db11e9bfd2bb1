//! Healing from the remote: a local object found damaged at run time (bytes
//! changed after verification, `crate::integrity`; an undecodable row a
//! compaction met) is fetched again from the sync remote when the remote
//! holds it, at the start of each round.
//!
//! Invariants:
//! - Only an object the namespace's newest local manifest references is
//!   fetched, and only as that manifest records it (length and crc32c are
//!   checked before the local copy is replaced; `Transfer::copy_over`): a
//!   remote copy that differs is never installed.
//! - The local object is replaced by a full write (staging file, fsync,
//!   publish), then the engine drops the damaged bytes from its caches and
//!   loaded states (`Engine::object_restored`): the next read maps the new file.
//! - A namespace no rule covers, or an object the remote lacks, stays marked
//!   (verify keeps reporting it); a failure is logged and retried next round.

use super::transfer::object_refs;
use super::Syncer;
use crate::engine::EngineError;
use crate::layout::NsPath;

impl Syncer {
    /// Fetch every damaged object a rule covers again from the remote.
    pub(super) async fn heal_damaged(&self) {
        for key in self.engine.damaged_keys() {
            let Some(path) = owner_of(&key).filter(|p| self.rule_for(p).is_some()) else { continue };
            match self.heal_one(&path, &key).await {
                Ok(true) => tracing::warn!(object = %key, remote = %self.cfg.remote,
                    "a damaged local object was fetched again from the sync remote"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(object = %key, error = %e, "a damaged local object could not be fetched again")
                }
            }
        }
    }

    /// Whether `key` was fetched again (false: not referenced locally, or the remote lacks it).
    async fn heal_one(&self, path: &NsPath, key: &str) -> Result<bool, EngineError> {
        let Some(local) = self.engine.latest_manifest(path).await? else { return Ok(false) };
        let Some(r) = object_refs(&local).into_iter().find(|r| r.key == key) else { return Ok(false) };
        let present = self.remote.exists(key).await;
        self.contact(present.is_ok());
        if !present? {
            return Ok(false);
        }
        self.down.copy_over(&r).await?;
        self.engine.object_restored(key, &self.cfg.remote);
        Ok(true)
    }
}

/// The namespace a key lives under (`{org}/{project}/namespaces/{ns}/…`).
fn owner_of(key: &str) -> Option<NsPath> {
    let mut parts = key.splitn(5, '/');
    let (org, project, namespaces, ns) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (namespaces == "namespaces").then(|| NsPath::new(org, project, ns).ok()).flatten()
}

#[cfg(test)]
mod tests {
    #[test]
    fn owner_of_a_key() {
        let p = super::owner_of("acme/search/namespaces/docs/segments/s1/data.seg").unwrap();
        assert_eq!((p.project_id().as_str(), p.ns()), ("acme/search", "docs"));
        assert!(super::owner_of("acme/search/other/docs/x").is_none());
        assert!(super::owner_of("_tidepool/ready-probe").is_none());
    }
}
